"""Defence in depth: a hostile value that got past the config's grammars still cannot run a command.

The host scripts that carry config strings (the package proxy and repository, the sandbox image,
a registry mirror's name) are rendered with values built to break out of their quotes, then run
for real by bash in a jail: a chroot holding only bash and its libraries, where every external
command is a stub that records its arguments and does nothing. A value that broke out would run
the canary command (`touch`); a value that stayed quoted arrives whole as one argument of the
command it was meant for, or in the file it was meant for.
"""
from __future__ import annotations

from typing import Any

import pytest

from components.config.model import ContainerdSettings, Host
from components.render import render
from tests.jail import an_argument_holds, run_in_jail

CANARY = "touch"
HOSTILE = {
    "double quote": '"; touch /tmp/kubeha-canary; echo "',
    "single quote": "x'; touch /tmp/kubeha-canary; echo '",
    "command substitution": "$(touch /tmp/kubeha-canary)",
    "backticks": "`touch /tmp/kubeha-canary`",
    "newline": "x\ntouch /tmp/kubeha-canary",
    "variable": "${PATH:+$(touch /tmp/kubeha-canary)}",
}
HOST = Host(name="w1", address="198.51.100.31")


def assert_nothing_broke_out(commands: list[list[str]]) -> None:
    ran = [command[0] for command in commands if command]
    assert CANARY not in ran, f"a hostile value ran a command: {ran}"
    assert ran, "the script ran no command at all: nothing was tested"


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
def test_a_hostile_proxy_sandbox_image_or_mirror_name_cannot_run_in_containerds_configuration(jail, value):
    script = render("node/containerd-config.sh.j2", host=HOST, package_proxy=value, containerd=ContainerdSettings(),
                    sandbox_image=value, no_proxy=["localhost", value], hosts_tomls={value: "# rendered by kubeha\n"})
    commands = run_in_jail(jail, script)
    assert_nothing_broke_out(commands)
    assert an_argument_holds(commands, "sed", f'sandbox_image = "{value}"#')
    assert an_argument_holds(commands, "install", f"/etc/containerd/certs.d/{value}")
