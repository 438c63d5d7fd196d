"""LoadBalancerPair: keepalived + haproxy on dedicated hosts, holding the apiserver VIP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
from pulumi_command import remote

from components.config.model import Host, LoadBalancerSettings, PackageSettings
from components.loadbalancer.lb_files import render_check_script, render_haproxy_cfg, render_keepalived_conf
from components.render import render
from components.ssh.remote import SshAccess, run_script

# haproxy's unit writes 0/1 here on start/stop; keepalived tracks it (see haproxy-track.conf.j2).
_TRACK_DIR = "/run/kubeha"
HAPROXY_TRACK_FILE = f"{_TRACK_DIR}/haproxy-stopped"
HAPROXY_TRACK_DROP_IN = "/etc/systemd/system/haproxy.service.d/kubeha-track.conf"


@dataclass(frozen=True)
class LoadBalancerPairArgs:
    settings: LoadBalancerSettings
    control_planes: Sequence[Host]
    ssh: SshAccess
    packages: PackageSettings


def rollout_order(hosts: list[Host]) -> list[Host]:
    """Backups first, the preferred master (hosts[0]) last, so one host always serves."""
    return [*hosts[1:], hosts[0]]


def render_lb_files(settings: LoadBalancerSettings, host: Host, control_planes: Sequence[Host]) -> dict[str, str]:
    """The files one LB host gets, by their path on the host."""
    return {
        HAPROXY_TRACK_DROP_IN: render("loadbalancer/haproxy-track.conf.j2", track_dir=_TRACK_DIR,
                                      track_file=HAPROXY_TRACK_FILE),
        "/etc/haproxy/haproxy.cfg": render_haproxy_cfg(host, settings, control_planes),
        "/etc/keepalived/keepalived.conf": render_keepalived_conf(host, settings, settings.hosts,
                                                                  track_file=HAPROXY_TRACK_FILE),
        "/etc/keepalived/check_apiserver.sh": render_check_script(settings),
    }


class LoadBalancerPair(pulumi.ComponentResource):
    """Installs, configures and rolls out keepalived + haproxy on the LB hosts, one at a time."""

    vip: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    ready: remote.Command  # the last host's rollout; depend on it for "the VIP serves"

    def __init__(self, name: str, args: LoadBalancerPairArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:LoadBalancerPair", name, None, opts)
        settings = args.settings
        previous: remote.Command | None = None
        for host in rollout_order(settings.hosts):
            install = run_script(
                f"{name}-{host.name}-install", host=host, ssh=args.ssh,
                create=render("loadbalancer/install-lb.sh.j2", package_proxy=args.packages.proxy),
                opts=pulumi.ResourceOptions(parent=self))
            files = render_lb_files(settings, host, args.control_planes)
            previous = run_script(
                f"{name}-{host.name}-config", host=host, ssh=args.ssh,
                create=render(
                    "loadbalancer/apply-lb-config.sh.j2", host=host,
                    haproxy_cfg=files["/etc/haproxy/haproxy.cfg"].rstrip("\n"),
                    keepalived_conf=files["/etc/keepalived/keepalived.conf"].rstrip("\n"),
                    check_script=files["/etc/keepalived/check_apiserver.sh"].rstrip("\n"),
                    haproxy_drop_in=files[HAPROXY_TRACK_DROP_IN].rstrip("\n")),
                delete=render("loadbalancer/remove-lb-config.sh.j2", host=host),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[install, *([previous] if previous else [])]))
        assert previous is not None  # settings guarantee at least two hosts
        self.ready = previous
        self.vip = pulumi.Output.from_input(str(settings.vip))
        self.endpoint = pulumi.Output.from_input(f"https://{settings.endpoint_host_port}")
        self.register_outputs({"vip": self.vip, "endpoint": self.endpoint})
