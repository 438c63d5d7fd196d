"""Defence in depth: a hostile value that got past the config's grammars still cannot run a command.

The host scripts that carry config strings (the package proxy and repository, the sandbox image,
a registry mirror's name) are rendered with values built to break out of their quotes, then run
for real by bash in a jail: a chroot holding only bash and its libraries, where every external
command is a stub that records its arguments and does nothing. A value that broke out would run
the canary command (`touch`); a value that stayed quoted arrives whole as one argument of the
command it was meant for, or in the file it was meant for.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.config import ContainerdSettings, Host
from components.render import render

CANARY = "touch"
HOSTILE = {
    "double quote": '"; touch /tmp/kubeha-canary; echo "',
    "single quote": "x'; touch /tmp/kubeha-canary; echo '",
    "command substitution": "$(touch /tmp/kubeha-canary)",
    "backticks": "`touch /tmp/kubeha-canary`",
    "newline": "x\ntouch /tmp/kubeha-canary",
    "variable": "${PATH:+$(touch /tmp/kubeha-canary)}",
}
# Every external command is this: its arguments go to fd 3, one record each (\x1f between
# arguments, \x1e after the record) written at once (the commands of a pipeline run side by side),
# and it succeeds without doing anything.
STUB = ("command_not_found_handle() { local record; printf -v record '%s\\x1f' \"$@\"; "
        "printf '%s\\x1e' \"${record}\" >&3; return 0; }\n")
# Folders the scripts write their files into (inside the jail).
FOLDERS = ["etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/keyrings", "etc/containerd/certs.d",
           "etc/systemd/system/containerd.service.d", "etc/modules-load.d", "etc/sysctl.d", "var/log/kubeha", "tmp"]


def _libraries(binary: str) -> list[Path]:
    listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return [Path(path) for path in re.findall(r"(/\S+) \(0x", listing)]


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    """A root holding only bash and the libraries it links."""
    root = tmp_path / "jail"
    bash = shutil.which("bash")
    assert bash
    for source in (Path(bash).resolve(), *_libraries(bash)):
        target = root / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin" / "bash").exists():
        shutil.copy2(Path(bash).resolve(), root / "bin" / "bash")
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    # A plain file stands in for the device (none can be made here): writes to it go nowhere that matters.
    (root / "dev").mkdir()
    (root / "dev" / "null").touch()
    return root


def run_in_jail(jail: Path, script: str) -> list[list[str]]:
    """Run `script` in the jail (errexit off, so it goes as far as it can); the external commands
    it ran, each as its argument list."""
    # Off, so a stub's empty answer does not end the run before the lines under test.
    body = script.replace("set -euo pipefail", "set -uo pipefail")
    (jail / "run.sh").write_text(STUB + body)
    result = subprocess.run(["unshare", "--user", "--map-root-user", "chroot", str(jail), "/bin/bash", "--norc",
                             "-c", "PATH=/nonexistent; source /run.sh 3>&1 >/output 2>&1 </dev/null"],
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return [record.split("\x1f")[:-1] for record in result.stdout.split("\x1e") if record]


def assert_nothing_broke_out(commands: list[list[str]]) -> None:
    ran = [command[0] for command in commands if command]
    assert CANARY not in ran, f"a hostile value ran a command: {ran}"
    assert ran, "the script ran no command at all: nothing was tested"


def an_argument_holds(commands: list[list[str]], program: str, value: str) -> bool:
    return any(command[0] == program and any(value in argument for argument in command[1:]) for command in commands)


HOST = Host(name="w1", address="198.51.100.31")


def package_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"host": HOST, "kubernetes_version": "1.34.4", "kubernetes_minor": "v1.34",
                               "package_repository": "https://pkgs.k8s.io/core:/stable:", "package_proxy": None}
    context.update(overrides)
    return context


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_proxy_stays_one_value_in_apt_and_curl(jail, value):
    commands = run_in_jail(jail, render("node/kubernetes-packages.sh.j2", **package_context(package_proxy=value)))
    assert_nothing_broke_out(commands)
    assert f'Acquire::http::Proxy "{value}";' in (jail / "etc/apt/apt.conf.d/90kubeha-proxy").read_text()


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_package_repository_stays_one_url(jail, value):
    commands = run_in_jail(jail, render("upgrade/repository-check.sh.j2", missing_status=3,
                                        **package_context(package_repository=value, package_proxy=value)))
    assert_nothing_broke_out(commands)
    assert an_argument_holds(commands, "curl", f"{value}/v1.34/deb/Packages")
    assert any(command[:3] == ["curl", "-fsSL", "--max-time"] and value in command for command in commands)


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_proxy_sandbox_image_or_mirror_name_cannot_run_in_the_host_preparation(jail, value):
    script = render("node/prepare-host.sh.j2", host=HOST, package_proxy=value, containerd=ContainerdSettings(),
                    sandbox_image=value, no_proxy=["localhost", value], ipv6=False,
                    hosts_tomls={value: "# rendered by kubeha\n"})
    commands = run_in_jail(jail, script)
    assert_nothing_broke_out(commands)
    assert an_argument_holds(commands, "sed", f'sandbox_image = "{value}"#')
    assert an_argument_holds(commands, "install", f"/etc/containerd/certs.d/{value}")
