#!/usr/bin/env bash
# Proves in the lab that a stack built by an older kubeha updates with no change under this one:
#   tools/update-from.sh REV [LB_MODE]
# In a git worktree of REV (build/update-from), `make lab-up` builds the lab cluster; the worktree
# then moves to this clone's HEAD, keeping the stack's state and config, and `pulumi preview
# --expect-no-changes` and `pulumi up --expect-no-changes` must both pass. The lab is taken down
# and the worktree removed at the end, whatever happened. Needs root and the lab (docs/lab.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
old="${1:?usage: tools/update-from.sh REV [LB_MODE]}"
mode="${2:-keepalived-haproxy}"
new="$(git -C "${root}" rev-parse HEAD)"
worktree="${root}/build/update-from"
# The worktree is not beside ../shared: the upstream snapshots stay where this clone finds them.
export VENDOR_DIR="${VENDOR_DIR:-$(cd "${root}/.." && pwd)/shared/vendor}"

cleanup() {
    local status=$?
    if [ -d "${worktree}" ]; then
        make -C "${worktree}" lab-down >/dev/null 2>&1 || true
        git -C "${root}" worktree remove --force "${worktree}" || true
    fi
    exit "${status}"
}
trap cleanup EXIT

rm -rf "${worktree}"
git -C "${root}" worktree prune
git -C "${root}" worktree add --detach "${worktree}" "${old}" >/dev/null
echo "== building the lab cluster with ${old} (${mode})"
make -C "${worktree}" lab-up LB_MODE="${mode}" > "${root}/build/update-from.up.log" 2>&1 \
    || { tail -n 40 "${root}/build/update-from.up.log"; exit 1; }
echo "== the same stack under ${new}"
git -C "${worktree}" checkout --quiet --detach "${new}"
cd "${worktree}"
# shellcheck source=/dev/null
source build/lab/env
# Allowed beside `same`: the creation of a component the old program did not have (it runs nothing
# on a host; kubeha's root Cluster, for one). Anything else is a change and fails.
changes() {  # changes PULUMI-ARGS...: the steps that are not `same` and not a new component
    pulumi "$@" --json --non-interactive | python3 -c "${steps_filter}"
}
# shellcheck disable=SC2016 # Python, not shell
steps_filter='
import json, sys
text = sys.stdin.read()
try:  # preview: one document with its steps
    document = json.loads(text)
    events = document.get("events", [])
except json.JSONDecodeError:  # up: a stream of engine events, one per line
    document, events = {}, [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
steps = document.get("steps") or [event["resourcePreEvent"]["metadata"] for event in events
                                  if "resourcePreEvent" in event]
if not steps:
    sys.exit("no steps in the output: nothing was observed")
for step in steps:
    op, urn = step["op"], step["urn"]
    kind = urn.split("::")[2].split("$")[-1]
    if op == "same":
        continue
    if op == "create" and kind.startswith("kubeha:index:"):
        print(f"  (new component: {urn})", file=sys.stderr)
        continue
    print(op, urn)
'
preview_changes="$(changes preview)"
[ -z "${preview_changes}" ] || { echo "the preview changes:"; echo "${preview_changes}"; exit 1; }
echo "== the preview changes nothing; now pulumi up"
up_changes="$(changes up --yes --skip-preview)"
[ -z "${up_changes}" ] || { echo "pulumi up changed:"; echo "${up_changes}"; exit 1; }
second="$(changes preview)"
[ -z "${second}" ] || { echo "after the up, the preview still changes:"; echo "${second}"; exit 1; }
echo "== ${old} -> ${new}: the preview and the up changed nothing on any host (only new components were added)"
