//go:build tools

// Package tools names the commands this wrapper builds, so that `go mod tidy` keeps what they need.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
