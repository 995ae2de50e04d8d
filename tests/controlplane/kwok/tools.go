//go:build tools

// Package tools names KWOK's command, built from the sigs.k8s.io/kwok module.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
