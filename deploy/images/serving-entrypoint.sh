#!/bin/sh
# The serving image's entrypoint: TorchServe on the registry's default version.
#
# The .mar files live on the models volume and the registry in the store (STORE_DATABASE_URL, or
# the SQLite file on the data volume), written by the trainer image (the bootstrap
# packages the shipped model as v1 on first start; retrain jobs and the operator verbs add
# versions), so a version hot-registered there is also what a restarted container serves. The
# default version may not exist yet when this starts (podman-compose does not wait for the bootstrap):
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
    python -m yoloserve.modelserver.serving_default "$MODELS"
}
waited=0
mar=$(default_mar)
while [ -z "$mar" ]; do
    if [ "$waited" -ge "$WAIT_S" ]; then
        echo "no default version in the store after ${WAIT_S} s (the bootstrap packages one)" >&2
        exit 1
    fi
    [ "$waited" -eq 0 ] && echo "waiting for a default version in the store ..."
    sleep 2
    waited=$((waited + 2))
    mar=$(default_mar)
done
echo "serving $mar"
mkdir -p /tmp/torchserve
exec torchserve --start --foreground --disable-token-auth --ncs \
    --ts-config /app/serving/config.properties \
    --model-store "$MODELS/store" --models "yolo=$mar"
