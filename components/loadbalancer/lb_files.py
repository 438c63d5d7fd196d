"""haproxy and keepalived config, rendered for every mode that runs them (the dedicated pair,
static pods on the control planes, haproxy as the node-local proxy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from components.config.grammar import APISERVER_PORT, host_port
from components.config.model import Host, LoadBalancerSettings
from components.render import render

# The first host starts with the higher priority; with nopreempt this only decides who takes
# the VIP when all come up together.
# High priorities on purpose: a backup waits 3 adverts plus a skew of (256 - priority) / 256
# adverts before it takes over, so 250 shaves ~60 ms off every failover compared with 100.
FIRST_PRIORITY = 250


@dataclass(frozen=True)
class Backend:
    name: str
    endpoint: str  # host:port, IPv6 in brackets


def backends_for(control_planes: Sequence[Host]) -> list[Backend]:
    """The apiservers behind every proxy, derived from the one control-plane list."""
    return [Backend(host.name, host_port(host.address, APISERVER_PORT)) for host in control_planes]


def render_haproxy_cfg(host: Host, settings: LoadBalancerSettings, control_planes: Sequence[Host], *,
                       bind_address: str = "", in_static_pod: bool = False) -> str:
    return render("loadbalancer/haproxy.cfg.j2", host=host, port=settings.listen_port,
                  backends=backends_for(control_planes), health_port=settings.health_port,
                  stats_port=settings.stats_port, bind_address=bind_address, in_static_pod=in_static_pod)


def render_keepalived_conf(host: Host, settings: LoadBalancerSettings, peers: Sequence[Host], *,
                           track_file: Optional[str]) -> str:
    """keepalived for one of `peers` (the hosts sharing the VIP, in priority order)."""
    assert settings.vip is not None
    return render(
        "loadbalancer/keepalived.conf.j2", host=host, interface=settings.interface_of(host),
        instance_name=f"kubeha_vip_{settings.virtual_router_id}", virtual_router_id=settings.virtual_router_id,
        priority=FIRST_PRIORITY - peers.index(host), peers=[peer for peer in peers if peer != host],
        vip=settings.vip, vip_prefix=settings.vip.max_prefixlen, track_file=track_file)


def render_check_script(settings: LoadBalancerSettings) -> str:
    return render("loadbalancer/check_apiserver.sh.j2", health_port=settings.health_port)
