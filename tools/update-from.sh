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
pulumi preview --expect-no-changes --diff --non-interactive
pulumi up --yes --skip-preview --expect-no-changes --non-interactive
echo "== ${old} -> ${new}: preview and up changed nothing"
