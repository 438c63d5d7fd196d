#!/usr/bin/env bash
# Build the Pulumi CLI from the Go module proxy into $ENGINE_DIR/bin, once; later runs reuse it.
# Versions are pinned in tools/engine/cli/go.mod (and must match pulumi in requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
ENGINE_DIR="${ENGINE_DIR:-${CACHE_DIR}/engine}"
export GOMODCACHE="${CACHE_DIR}/go/mod" GOCACHE="${CACHE_DIR}/go/build" GOFLAGS=-mod=mod
version="$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" {print $2}' "${here}/cli/go.mod")"
python_version="$(sed -n 's/^pulumi==//p' "${here}/../../requirements.txt")"
if [ "v${python_version}" != "${version}" ]; then
    echo "tools/engine/cli/go.mod pins pulumi ${version} but requirements.txt pins ${python_version}" >&2
    exit 1
fi
mkdir -p "${ENGINE_DIR}/bin"
if [ "$("${ENGINE_DIR}/bin/pulumi" version 2>/dev/null || true)" = "${version}" ]; then
    echo "pulumi ${version} already built in ${ENGINE_DIR}/bin"
else
    (cd "${here}/cli" && go build -trimpath \
        -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${version}" \
        -o "${ENGINE_DIR}/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    echo "built $("${ENGINE_DIR}/bin/pulumi" version) into ${ENGINE_DIR}/bin"
fi

# The Python language host: ours (the official Go module is not obtainable, see README.md) next
# to the SDK's own exec script from the sdk/v3 module of the same version.
(cd "${here}/cli" && go mod download github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "${GOMODCACHE}/github.com/pulumi/pulumi/sdk/v3@${version}/python/cmd/pulumi-language-python-exec" \
    "${ENGINE_DIR}/bin/pulumi-language-python-exec"
install -m 0755 "${here}/pulumi-language-python" "${ENGINE_DIR}/bin/pulumi-language-python"
echo "engine ready in ${ENGINE_DIR}/bin: pulumi $("${ENGINE_DIR}/bin/pulumi" version), Python language host"
