#!/usr/bin/env bash
# Regenerate components/config/component_flags.json: every flag of kube-apiserver,
# kube-controller-manager and kube-scheduler, as the release's own binaries list them (`--help`;
# the lab's builds, tests/lab/kubernetes/build.sh). `--check`: fail if the committed file differs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/generated-file.sh
source "${here}/generated-file.sh"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.34.4}"
bin="${KUBE_DIR:-${CACHE_DIR}/kubernetes/v${KUBERNETES_VERSION}}/bin"
target="${here}/../components/config/component_flags.json"
for component in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "${bin}/${component}" ] || { echo "${bin}/${component} is not built; run make setup" >&2; exit 1; }
done
fresh="$(for component in kube-apiserver kube-controller-manager kube-scheduler; do
             echo "${component}"
             # A flag's line: "      --name type   help" (or "  -v, --v Level ...").
             "${bin}/${component}" --help 2>&1 | sed -nE 's/^ +(-[a-z], )?--([a-z0-9][a-z0-9-]*).*/  \2/p' | sort -u
         done | python3 -c '
import json, sys
flags, component = {}, None
for line in sys.stdin.read().splitlines():
    if line.startswith("  "):
        flags[component].append(line.strip())
    else:
        component = line
        flags[component] = []
print(json.dumps({"release": sys.argv[1], "flags": flags}, indent=1, sort_keys=True))
' "${KUBERNETES_VERSION}")"
check_or_write "${target}" "${fresh}" "the binaries" "${1:-}"
