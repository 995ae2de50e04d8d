//go:build tools

// Package tools names the node commands built from the k8s.io/kubernetes module (the
// control plane's release): the kubelet and kube-proxy of the tests' real nodes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
