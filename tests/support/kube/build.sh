#!/usr/bin/env bash
# Build a REAL kube-apiserver + kube-controller-manager v1.20.2 for the contract tests, from Debian's archive only:
#   source    = Debian bookworm source package `kubernetes` (upstream v1.20.2 with vendored Go dependencies)
#   toolchain = Debian golang-1.19-go
#   fix       = the vendored modern-go/reflect2 1.0.1 segfaults under Go >= 1.18; swap in Debian's 1.0.2
# Also installs Debian's etcd-server (the apiserver's storage). Binaries are cached in
#   ${AIOPS_KUBE_CACHE:-$HOME/.cache/aiops/kube-v1.20.2}/bin
# so only the first run on a machine pays (~10 min on 2 cores, ~1.3 GB RSS, ~2.2 GB scratch disk).
# Idempotent: exits at once when both binaries and etcd exist.
set -euo pipefail

CACHE=${AIOPS_KUBE_CACHE:-$HOME/.cache/aiops/kube-v1.20.2}
OUT=$CACHE/bin
WORK=${AIOPS_KUBE_BUILD_DIR:-$CACHE/build}
WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive

have_binaries() { [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ]; }

APT_UPDATED=
apt_install() {  # install only the packages that are missing (apt-get update once, only if needed)
    local missing=()
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "build.sh: apt-get install ${missing[*]}"
    [ -n "$APT_UPDATED" ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install etcd-server openssl
if have_binaries; then
    echo "build.sh: cached: $OUT"
    exit 0
fi
# Two builds at once (parallel `make` runs) would trample each other's work dir: the second waits, then finds the cache.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if have_binaries; then
    echo "build.sh: built by another run meanwhile: $OUT"
    exit 0
fi

T0=$(date +%s)
apt_install golang-1.19-go rsync dpkg-dev golang-github-modern-go-reflect2-dev make

# A private deb-src list so the build never edits /etc/apt.
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/parts" "$OUT"
cat > "$WORK/apt/sources.list" <<'SRC'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
SRC
# The private lists live under $HOME, which apt's unprivileged `_apt` user may not read: download as ourselves.
APTO=(-o Dir::Etc::SourceList="$WORK/apt/sources.list" -o Dir::Etc::SourceParts="$WORK/apt/parts"
      -o Dir::State::Lists="$WORK/apt/lists" -o APT::Sandbox::User="$(id -un)")
apt-get "${APTO[@]}" update -qq
cd "$WORK"
rm -rf src kubernetes_*
apt-get "${APTO[@]}" source --download-only kubernetes >/dev/null
dpkg-source -x kubernetes_*.dsc src >/dev/null

V=src/vendor/github.com/modern-go/reflect2
mv "$V" "$V.orig" && mkdir "$V"
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$V/"
cp "$V.orig/LICENSE" "$V/" && rm -rf "$V.orig"

cd src
export GOPATH=$PWD/.go PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor HOME=$WORK/home
mkdir -p .go/src/k8s.io "$HOME"
ln -sfn ../../.. .go/src/k8s.io/kubernetes
echo "build.sh: compiling $WHAT (log: $WORK/make.log)"
if ! make WHAT="$WHAT" >"$WORK/make.log" 2>&1; then
    tail -40 "$WORK/make.log" >&2
    exit 1
fi
for b in $WHAT; do
    # copy under a temp name then rename, so a half-copied binary never counts as cached
    cp "_output/bin/$(basename "$b")" "$OUT/.$(basename "$b").tmp"
    mv "$OUT/.$(basename "$b").tmp" "$OUT/$(basename "$b")"
done
cd / && rm -rf "$WORK"  # 2.2 GB of sources and objects are not needed once the binaries are cached
echo "build.sh: built in $(( $(date +%s) - T0 ))s -> $OUT"
ls -la "$OUT"
