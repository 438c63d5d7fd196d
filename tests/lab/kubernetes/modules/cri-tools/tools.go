//go:build tools

// Package tools pins the commands tests/lab/kubernetes/build.sh builds from this module.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
