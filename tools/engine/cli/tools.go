//go:build tools

// Package cli pins the Pulumi CLI's module version for tools/engine/build.sh.
package cli

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
