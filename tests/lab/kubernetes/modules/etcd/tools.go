//go:build tools

// Package tools pins the commands tests/lab/kubernetes/build.sh builds from this module.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
