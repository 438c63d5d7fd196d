#!/usr/bin/env bash
# Regenerate components/config/component_config_fields.json: the fields of the kubelet's and kube-proxy's
# configuration types, read from the real Go types of the release in tools/component-config-fields/go.mod
# (k8s.io/kubelet and k8s.io/kube-proxy). `--check`: fail if the committed file differs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
export GOMODCACHE="${CACHE_DIR}/go/mod" GOCACHE="${CACHE_DIR}/go/build" GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local
target="${here}/../components/config/component_config_fields.json"
fresh="$(cd "${here}/component-config-fields" && go run .)"
if [ "${1:-}" = --check ]; then
    if ! diff -u "${target}" <(printf '%s\n' "${fresh}"); then
        echo "components/config/component_config_fields.json is not what the Go types say: run tools/component-config-fields.sh" >&2
        exit 1
    fi
    exit 0
fi
printf '%s\n' "${fresh}" > "${target}"
echo "wrote ${target}"
