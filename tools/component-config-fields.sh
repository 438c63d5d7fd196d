#!/usr/bin/env bash
# Regenerate components/config/component_config_fields.json: the fields of the kubelet's and kube-proxy's
# configuration types, read from the real Go types of the release in tools/component-config-fields/go.mod
# (k8s.io/kubelet and k8s.io/kube-proxy). `--check`: fail if the committed file differs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/generated-file.sh
source "${here}/generated-file.sh"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
export GOMODCACHE="${CACHE_DIR}/go/mod" GOCACHE="${CACHE_DIR}/go/build" GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local
target="${here}/../components/config/component_config_fields.json"
fresh="$(cd "${here}/component-config-fields" && go run .)"
check_or_write "${target}" "${fresh}" "the Go types" "${1:-}"
