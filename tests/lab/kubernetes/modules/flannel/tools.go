//go:build tools

// Package tools pins the commands tests/lab/kubernetes/build.sh builds from this module.
package tools

import _ "github.com/flannel-io/flannel"
