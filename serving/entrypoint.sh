#!/bin/sh
# Start TorchServe on the registry's default version. The store and registry live on the shared
# models/ volume, so a version hot-registered by the retrain job survives a container restart.
# With arguments it runs them instead, as TorchServe's own image does: KServe's ServingRuntime
# (deploy/kubernetes/overlays/prod/servingruntime.yaml) passes `torchserve --start ...` on
# /mnt/models.
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
MODELS=/models
STORE="$MODELS/store"
mkdir -p "$STORE"
default_mar=$(python - <<'PY'
import json, pathlib
reg = pathlib.Path("/models/registry.json")
if reg.exists():
    data = json.loads(reg.read_text())
    for v in data.get("versions", []):
        if v.get("version") == data.get("default_version"):
            print(v.get("mar_file", ""))
PY
)
if [ -z "$default_mar" ] || [ ! -f "$STORE/$default_mar" ]; then
    # First start on an empty volume: package the shipped default weights as version 1.
    torch-model-archiver --model-name yolo --version 1 \
        --serialized-file "$MODELS/default/best.pt" \
        --handler /home/model-server/serving/handler.py \
        --config-file /home/model-server/serving/model-config.yaml \
        --export-path "$STORE" -f
    mv "$STORE/yolo.mar" "$STORE/yolo_v1.mar"
    default_mar=yolo_v1.mar
fi
exec torchserve --start --foreground --disable-token-auth \
    --ts-config /home/model-server/config.properties \
    --model-store "$STORE" --models "yolo=$default_mar"
