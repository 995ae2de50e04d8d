//go:build tools

// Package tools names Helm's command, built from the helm.sh/helm/v3 module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
