#!/bin/sh
# The serving image's entrypoint: TorchServe on the registry's default version.
#
# The store and registry live on the models volume, written by the trainer image (the bootstrap
# packages the shipped model as v1 on first start; retrain jobs and the operator verbs add
# versions), so a version hot-registered there is also what a restarted container serves. The
# registry may not exist yet when this starts (podman-compose does not wait for the bootstrap):
# wait for it rather than serve nothing.
#
# With arguments it runs them instead, as TorchServe's own image does: KServe's ServingRuntime
# (deploy/kubernetes/overlays/prod/servingruntime.yaml) passes `torchserve --start ...` on
# /mnt/models.
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
MODELS="${YOLOSERVE_MODELS_DIR:-/models}"
WAIT_S="${SERVING_REGISTRY_WAIT_S:-900}"
default_mar() {
    python - "$MODELS" <<'PY'
import json, pathlib, sys
models = pathlib.Path(sys.argv[1])
try:
    data = json.loads((models / "registry.json").read_text())
except (OSError, ValueError):
    sys.exit(0)
for v in data.get("versions", []):
    if v.get("version") == data.get("default_version") and (models / "store" / v["mar"]).is_file():
        print(v["mar"])
PY
}
waited=0
mar=$(default_mar)
while [ -z "$mar" ]; do
    if [ "$waited" -ge "$WAIT_S" ]; then
        echo "no default version in $MODELS/registry.json after ${WAIT_S} s (the bootstrap packages one)" >&2
        exit 1
    fi
    [ "$waited" -eq 0 ] && echo "waiting for a default version in $MODELS/registry.json ..."
    sleep 2
    waited=$((waited + 2))
    mar=$(default_mar)
done
echo "serving $mar"
mkdir -p /tmp/torchserve
exec torchserve --start --foreground --disable-token-auth --ncs \
    --ts-config /app/serving/config.properties \
    --model-store "$MODELS/store" --models "yolo=$mar"
