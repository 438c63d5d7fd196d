#!/usr/bin/env bash
# Build the Pulumi engine kubeha runs with, once, into $ENGINE_DIR; later runs reuse every part.
#   bin/pulumi                     the CLI, from the Go module proxy (version: cli/go.mod)
#   bin/pulumi-language-python     the official Python language host, from its upstream snapshot
#   bin/pulumi-language-python-exec  the SDK's exec script, from the sdk/v3 module, unchanged
#   bin/pulumi-resource-pulumi-python  the SDK's dynamic-provider plugin script, same module, unchanged
#   plugins/pulumi-resource-command     the command provider, from its upstream snapshot
#   plugins/pulumi-resource-kubernetes  the kubernetes provider, from the Go module proxy
# and installs both plugins into the plugin home $ENGINE_DIR/home (PULUMI_HOME), so the
# machine's own ~/.pulumi is never touched. Sources and versions: tools/engine/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
ENGINE_DIR="${ENGINE_DIR:-${CACHE_DIR}/engine}"
VENDOR_DIR="${VENDOR_DIR:-${root}/../shared/vendor}"
SRC_DIR="${CACHE_DIR}/src"
export GOMODCACHE="${CACHE_DIR}/go/mod" GOCACHE="${CACHE_DIR}/go/build" GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local
export PULUMI_HOME="${ENGINE_DIR}/home" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

requirement() {  # the version requirements.txt pins for a Python package
    sed -n "s/^$1==//p" "${root}/requirements.txt"
}

cli_version="$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" {print $2}' "${here}/cli/go.mod")"
command_version="$(requirement pulumi-command)"
kubernetes_version="$(requirement pulumi-kubernetes)"
# The kubernetes provider's release commit is not on the module proxy; the commit just before
# it is, and its code is the release's (only the generated SDKs differ).
kubernetes_module="github.com/pulumi/pulumi-kubernetes/provider/v4@v4.0.0-20260115033456-f47bc2d6f199"
if [ "v$(requirement pulumi)" != "${cli_version}" ]; then
    echo "tools/engine/cli/go.mod pins pulumi ${cli_version} but requirements.txt pins $(requirement pulumi)" >&2
    exit 1
fi
if [ "${kubernetes_version}" != 4.25.0 ]; then
    echo "requirements.txt pins pulumi-kubernetes ${kubernetes_version}; this script builds the plugin 4.25.0" >&2
    exit 1
fi
mkdir -p "${ENGINE_DIR}/bin" "${ENGINE_DIR}/plugins" "${SRC_DIR}"

built() {  # $1 binary, $2 version stamp: true when the binary exists and was built as that version
    [ -x "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ] && return 0
    rm -f "$1" "$1.version"   # whatever is there (an older build, another tool) is rebuilt
    return 1
}

stamp() {  # $1 binary, $2 version
    echo "$2" > "$1.version"
    echo "built $(basename "$1") $2 ($(du -h "$1" | cut -f1))"
}

unpack_snapshot() {  # $1 tarball in VENDOR_DIR, $2 destination (fresh copy each time)
    local tarball="${VENDOR_DIR}/$1"
    [ -f "${tarball}" ] || { echo "missing upstream snapshot ${tarball} (see tools/engine/README.md)" >&2; exit 1; }
    rm -rf "$2"
    mkdir -p "$2"
    tar -xzf "${tarball}" -C "$2" --strip-components=1
}

build_cli() {
    local bin="${ENGINE_DIR}/bin/pulumi"
    built "${bin}" "${cli_version}" && return
    (cd "${here}/cli" && go build \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${cli_version}" \
        -o "${bin}" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    stamp "${bin}" "${cli_version}"
}

build_language_host() {
    local bin="${ENGINE_DIR}/bin/pulumi-language-python"
    if ! built "${bin}" "${cli_version}"; then
        local src="${SRC_DIR}/pulumi-language-python"
        unpack_snapshot "pulumi-language-python-${cli_version#v}.tar.gz" "${src}"
        # Upstream builds it inside the monorepo; outside it, the two monorepo replaces become
        # requirements of the CLI's own version. The code is unchanged.
        (cd "${src}/sdk/python/cmd/pulumi-language-python" \
            && go mod edit -dropreplace=github.com/pulumi/pulumi/pkg/v3 -dropreplace=github.com/pulumi/pulumi/sdk/v3 \
                 -require="github.com/pulumi/pulumi/pkg/v3@${cli_version}" -require="github.com/pulumi/pulumi/sdk/v3@${cli_version}" \
            && go build -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${cli_version}" -o "${bin}" .)
        stamp "${bin}" "${cli_version}"
    fi
    (cd "${here}/cli" && go mod download github.com/pulumi/pulumi/sdk/v3)
    local sdk="${GOMODCACHE}/github.com/pulumi/pulumi/sdk/v3@${cli_version}/python"
    install -m 0755 "${sdk}/cmd/pulumi-language-python-exec" "${ENGINE_DIR}/bin/pulumi-language-python-exec"
    # What the official CLI ships beside the language host: the plugin that serves Python
    # dynamic providers (the settings guard is one).
    install -m 0755 "${sdk}/dist/pulumi-resource-pulumi-python" "${ENGINE_DIR}/bin/pulumi-resource-pulumi-python"
}

build_command_plugin() {
    local bin="${ENGINE_DIR}/plugins/pulumi-resource-command"
    built "${bin}" "${command_version}" && return
    local src="${SRC_DIR}/pulumi-command"
    unpack_snapshot "pulumi-command-${command_version}-provider.tar.gz" "${src}"
    (cd "${src}/provider" && go build \
        -ldflags "-s -w -X github.com/pulumi/pulumi-command/provider/pkg/version.Version=${command_version}" \
        -o "${bin}" ./cmd/pulumi-resource-command)
    stamp "${bin}" "${command_version}"
}

build_kubernetes_plugin() {
    local bin="${ENGINE_DIR}/plugins/pulumi-resource-kubernetes"
    built "${bin}" "${kubernetes_version}" && return
    local src="${SRC_DIR}/pulumi-kubernetes-provider" module_dir
    module_dir="$(cd "${here}/cli" && go mod download -json "${kubernetes_module}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    rm -rf "${src}"
    cp -r "${module_dir}" "${src}"
    chmod -R u+w "${src}"
    # Upstream's build writes these two generated files next to main.go before compiling; the
    # module holds their sources under the names the repository keeps.
    cp "${src}/cmd/pulumi-resource-kubernetes/schema.json" "${src}/cmd/pulumi-resource-kubernetes/schema-embed.json"
    cp "${src}/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "${src}/cmd/pulumi-resource-kubernetes/terraform-mapping-embed.json"
    # The module's own replace points at the monorepo's sdk folder; use the released SDK module.
    (cd "${src}" \
        && go mod edit -replace="github.com/pulumi/pulumi-kubernetes/sdk/v4=github.com/pulumi/pulumi-kubernetes/sdk/v4@v${kubernetes_version}" \
        && go build -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${kubernetes_version}" \
             -o "${bin}" ./cmd/pulumi-resource-kubernetes)
    stamp "${bin}" "${kubernetes_version}"
}

install_plugin() {  # $1 name, $2 version: into the plugin home, once per build
    local bin="${ENGINE_DIR}/plugins/pulumi-resource-$1" installed="${PULUMI_HOME}/plugins/resource-$1-v$2"
    if [ -x "${installed}/pulumi-resource-$1" ] && cmp -s "${bin}" "${installed}/pulumi-resource-$1"; then
        return
    fi
    "${ENGINE_DIR}/bin/pulumi" plugin install resource "$1" "$2" --file "${bin}" --reinstall
}

started=${EPOCHREALTIME}
build_cli
build_language_host
build_command_plugin
build_kubernetes_plugin
install_plugin command "${command_version}"
install_plugin kubernetes "${kubernetes_version}"
printf 'engine ready in %s (%.0f s): pulumi %s, official Python language host, plugins:\n' \
    "${ENGINE_DIR}" "$(awk -v a="${started}" -v b="${EPOCHREALTIME}" 'BEGIN {print b - a}')" "$("${ENGINE_DIR}/bin/pulumi" version)"
"${ENGINE_DIR}/bin/pulumi" plugin ls
