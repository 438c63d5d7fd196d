# shellcheck shell=bash
# Sourced by the tools that regenerate a committed file from its source of truth.
# check_or_write TARGET FRESH WHAT MODE: with MODE --check, fail (naming WHAT and the tool to run)
# if TARGET differs from FRESH; otherwise write FRESH to TARGET.
check_or_write() {
    local target="$1" fresh="$2" what="$3" mode="$4"
    if [ "${mode}" = --check ]; then
        if ! diff -u "${target}" <(printf '%s\n' "${fresh}"); then
            echo "${target#*/../} is not what ${what} say: run ${0#*/../}" >&2
            exit 1
        fi
        exit 0
    fi
    printf '%s\n' "${fresh}" > "${target}"
    echo "wrote ${target}"
}
