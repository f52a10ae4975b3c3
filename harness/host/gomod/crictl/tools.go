//go:build tools

// Package tools names the commands this wrapper builds, so that `go mod tidy` keeps what they need.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
