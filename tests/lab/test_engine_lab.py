"""The engine path for real: pulumi CLI, language host and the command provider over SSH.

A one-command program (tests/lab/programs/ssh-smoke, built on the product's own run_script
helper) goes through up, update, a no-op preview and destroy against a lab host.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.lab.hosts import LAB_DIR

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PROGRAM = Path(__file__).resolve().parent / "programs" / "ssh-smoke"
ENGINE_DIR = os.environ.get("ENGINE_DIR", "/var/cache/kubeha/engine")


@pytest.fixture(scope="module")
def pulumi(lab_hosts, tmp_path_factory):
    """Run `pulumi ARGS` for the smoke program in a fresh local backend, through tools/engine/env.sh."""
    state = tmp_path_factory.mktemp("state")
    environment = {**os.environ, "KUBEHA_ROOT": str(ROOT), "ENGINE_DIR": ENGINE_DIR, "STATE_DIR": str(state),
                   "PYTHONPATH": str(ROOT)}

    def run(*args: str, stdin: str | None = None) -> str:
        command = 'source "$KUBEHA_ROOT/tools/engine/env.sh" 2>/dev/null && pulumi "$@"'
        result = subprocess.run(["bash", "-c", command, "pulumi", *args, "--stack", "organization/kubeha-ssh-smoke/lab",
                                 "--non-interactive"], cwd=PROGRAM, env=environment, input=stdin,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("stack", "init")
    host = lab_hosts["lb1"]
    run("config", "set", "hostName", host.name)
    run("config", "set", "hostAddress", host.address)
    run("config", "set", "marker", "one")
    run("config", "set", "--secret", "sshPrivateKey", stdin=(LAB_DIR / "id_ed25519").read_text())
    run("up", "--yes")
    return run


def test_up_runs_the_command_with_its_secret_stdin(pulumi, lab_hosts):
    assert lab_hosts["lb1"].run("cat /root/kubeha-smoke").stdout.strip() == "one"
    assert json.loads(pulumi("stack", "output", "--json", "--show-secrets"))["echoed"] == "s3cr3t-value"


def test_secret_stdout_stays_secret_in_outputs(pulumi):
    assert json.loads(pulumi("stack", "output", "--json"))["echoed"] == "[secret]"


def test_changed_script_reruns_on_update(pulumi, lab_hosts):
    pulumi("config", "set", "marker", "two")
    pulumi("up", "--yes")
    assert lab_hosts["lb1"].run("cat /root/kubeha-smoke").stdout.strip() == "two"


def test_unchanged_program_previews_no_change(pulumi):
    summary = json.loads(pulumi("preview", "--json"))["changeSummary"]
    assert set(summary) == {"same"}


def test_destroy_runs_the_delete_script(pulumi, lab_hosts):
    pulumi("destroy", "--yes")
    assert lab_hosts["lb1"].run("test -e /root/kubeha-smoke", check=False).returncode != 0
