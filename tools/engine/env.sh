# shellcheck shell=bash
# Source this to run pulumi against local state. Uses the pulumi CLI on PATH (the official one,
# with its own plugins and ~/.pulumi), or else the engine `make engine` built into $ENGINE_DIR:
# the CLI, the official Python language host and the command and kubernetes plugins, in a
# plugin home of its own ($ENGINE_DIR/home) that never downloads anything.
# Needs: ENGINE_DIR, STATE_DIR.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-kubeha-dev}"
export PULUMI_BACKEND_URL="file://${STATE_DIR}"
export PULUMI_SKIP_UPDATE_CHECK=true
if ! command -v pulumi >/dev/null 2>&1; then
    export PATH="${ENGINE_DIR}/bin:${PATH}"
fi
if [ "$(command -v pulumi)" = "${ENGINE_DIR}/bin/pulumi" ]; then
    export PULUMI_HOME="${ENGINE_DIR}/home"
    export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
fi
