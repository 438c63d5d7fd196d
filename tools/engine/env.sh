# shellcheck shell=bash
# Source this to run pulumi against local state. Picks the pulumi CLI on PATH, or else the one
# `make engine` built into $ENGINE_DIR; with that self-built engine (and no real `command` plugin
# installed) it adds the test stand-in for the command provider, and says so.
# Needs: KUBEHA_ROOT (the clone), ENGINE_DIR, STATE_DIR.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-kubeha-dev}"
export PULUMI_BACKEND_URL="file://${STATE_DIR}"
export PULUMI_SKIP_UPDATE_CHECK=true
if ! command -v pulumi >/dev/null 2>&1; then
    export PATH="${ENGINE_DIR}/bin:${PATH}"
fi
if [ "$(command -v pulumi)" = "${ENGINE_DIR}/bin/pulumi" ]; then
    # Our engine cannot download plugins, and must not try.
    export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
    if ! pulumi plugin ls 2>/dev/null | grep -q '^command '; then
        echo "NOTE: using the kubeha TEST STAND-IN for the command provider (tests/standins/);" \
             "the real plugin cannot be built on this machine, see tools/engine/README.md" >&2
        export PATH="${KUBEHA_ROOT}/tests/standins:${PATH}"
    fi
fi
