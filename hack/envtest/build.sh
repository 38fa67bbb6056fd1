#!/usr/bin/env bash
# Build the real control plane the integration tests run against (like controller-runtime's envtest):
# kube-apiserver, kube-controller-manager (garbage collector only) and etcd, from the releases pinned in
# hack/envtest/go.mod, into ~/.cache/kubetune/envtest/<key>/ ($KUBETUNE_ENVTEST_DIR/<key> when set). A no-op when the binaries are already there.
#
#   hack/envtest/build.sh          build if missing, print the folder
#   hack/envtest/build.sh --path   print the folder only (exit 1 when not built)
#
# Needs Go (go on PATH, /usr/local/go/bin/go, or $GO) and the Go module proxy. The module and build
# caches ($GOMODCACHE, $GOCACHE) make a second build on the same machine quick.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

version_of() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$here/go.mod"; }
k8s="$(version_of k8s.io/kubernetes)"
etcd="$(version_of go.etcd.io/etcd/server/v3)"
key="k8s-${k8s#v}-etcd-${etcd#v}"
# Per user, not per checkout (as setup-envtest keeps its binaries): a fresh clone on the same machine reuses them.
out="${KUBETUNE_ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/envtest}/$key"
binaries=(kube-apiserver kube-controller-manager etcd)

built() { for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || return 1; done; }

if [[ "${1:-}" == "--path" ]]; then
  built && { echo "$out"; exit 0; }
  exit 1
fi
if built; then
  echo "$out"
  exit 0
fi

go="${GO:-$(command -v go || true)}"
[[ -n "$go" ]] || go=/usr/local/go/bin/go
if [[ ! -x "$go" ]]; then
  echo "hack/envtest/build.sh: Go is needed to build kube-apiserver and etcd (none on PATH, no /usr/local/go/bin/go; set GO=)" >&2
  exit 2
fi

minor="${k8s#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

mkdir -p "${out%/*}"
tmp="$(mktemp -d "${out%/*}/.building.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "building kube-apiserver, kube-controller-manager $k8s and etcd $etcd into $out (first build: ~20 min on 2 cores)" >&2
start=$SECONDS
(
  cd "$here"
  CGO_ENABLED=0 "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "built in $((SECONDS - start)) s: $(du -sh "$out" | cut -f1) in $out" >&2
echo "$out"
