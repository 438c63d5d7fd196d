"""What preflight checks, on facts gathered from the hosts (templates/preflight/host-facts.sh.j2).

Pure logic, so every check is tested on recorded facts, including the ones a lab cannot provoke
(the clock and the hardware belong to the machine its hosts share). Every problem of every host
is reported at once, as one table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from components.config.grammar import NODE_PORT_RANGE

# Debian and Ubuntu releases kubeha's package steps are written for (apt, pkgs.k8s.io).
SUPPORTED_OS: dict[str, tuple[str, ...]] = {"debian": ("11", "12", "13"), "ubuntu": ("22.04", "24.04")}
# kubeadm's own minimums for a control plane.
MIN_CONTROL_PLANE_CPUS = 2
MIN_CONTROL_PLANE_MEMORY_MB = 1700
MAX_CLOCK_SKEW_S = 1.0


@dataclass(frozen=True)
class HostFacts:
    os_id: str
    os_version: str
    cgroup: int
    swap_kb: int
    cpus: int
    memory_mb: int
    hostname: str
    product_uuid: str
    macs: tuple[str, ...]
    listening: frozenset[int]
    time_synchronized: str  # yes, no or unknown
    in_use_by_kubeha: bool
    clock_offset_s: float  # the host's clock minus this machine's, at the moment it was read
    # The site's balancer (loadBalancer.mode external), seen from this host: yes, no, or "" (not asked).
    endpoint_resolves: str = ""
    endpoint_answers: str = ""

    @classmethod
    def parse(cls, text: str, clock_offset_s: float) -> "HostFacts":
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

        def number_list(key: str) -> list[str]:
            return [item for item in values.get(key, "").split(",") if item]

        return cls(os_id=values.get("os_id", ""), os_version=values.get("os_version", ""),
                   cgroup=int(values.get("cgroup", "1")),
                   swap_kb=int(values.get("swap_kb", "0")), cpus=int(values.get("cpus", "0")),
                   memory_mb=int(values.get("memory_mb", "0")), hostname=values.get("hostname", ""),
                   product_uuid=values.get("product_uuid", ""), macs=tuple(number_list("macs")),
                   listening=frozenset(int(port) for port in number_list("listening") if port.isdigit()),
                   time_synchronized=values.get("time_synchronized", "unknown"),
                   in_use_by_kubeha=values.get("in_use_by_kubeha") == "yes", clock_offset_s=clock_offset_s,
                   endpoint_resolves=values.get("endpoint_resolves", ""),
                   endpoint_answers=values.get("endpoint_answers", ""))


@dataclass(frozen=True)
class PlannedHost:
    """A host as the config has it: what it will be and which ports that takes."""

    name: str
    address: str
    role: str  # control plane, worker, load balancer
    ports: tuple[int, ...]
    node_port_range: bool = False  # a worker: kube-proxy owns 30000-32767


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    found: str
    expected: str


@dataclass(frozen=True)
class Policy:
    skip: frozenset[str] = frozenset()
    allow_cgroup_v1: bool = False  # kubernetes.kubelet.failCgroupV1: false
    allow_swap: bool = False  # kubernetes.kubelet.failSwapOn: false
    vip: Optional[str] = None  # checked free only while no host is in use by kubeha
    endpoint: Optional[str] = None  # loadBalancer.endpoint (external mode): resolved and answering on every host


@dataclass
class Survey:
    """Facts per host; a host whose facts could not be gathered has an error instead."""

    facts: dict[str, HostFacts] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    vip_answering: bool = False


def _host_findings(host: PlannedHost, facts: HostFacts, policy: Policy) -> Iterable[Finding]:
    supported = SUPPORTED_OS.get(facts.os_id)
    if supported is None or facts.os_version not in supported:
        known = "; ".join(f"{name} {', '.join(versions)}" for name, versions in SUPPORTED_OS.items())
        yield Finding(host.name, "os", f"{facts.os_id or '?'} {facts.os_version or '?'}", known)
    if facts.swap_kb > 0 and not policy.allow_swap:
        yield Finding(host.name, "swap", f"{facts.swap_kb // 1024} MB of swap on",
                      "swap off (or kubernetes.kubelet.failSwapOn: false and a memorySwap setting)")
    if facts.cgroup != 2 and not policy.allow_cgroup_v1:
        yield Finding(host.name, "cgroup", "cgroup v1",
                      "cgroup v2 (or kubernetes.kubelet.failCgroupV1: false, for the kubelet's maintenance mode)")
    if not facts.in_use_by_kubeha:
        taken = sorted(port for port in host.ports if port in facts.listening)
        if taken:
            yield Finding(host.name, "ports", "in use: " + ", ".join(map(str, taken)),
                          f"free for a {host.role}: " + ", ".join(map(str, host.ports)))
        if host.node_port_range:
            in_range = sorted(port for port in facts.listening if port in NODE_PORT_RANGE)
            if in_range:
                yield Finding(host.name, "ports", "in use: " + ", ".join(map(str, in_range)),
                              "30000-32767 free for NodePort Services")
    if host.role == "control plane":
        if facts.cpus < MIN_CONTROL_PLANE_CPUS:
            yield Finding(host.name, "cpu", f"{facts.cpus} CPU", f"at least {MIN_CONTROL_PLANE_CPUS} (kubeadm)")
        if facts.memory_mb < MIN_CONTROL_PLANE_MEMORY_MB:
            yield Finding(host.name, "memory", f"{facts.memory_mb} MB",
                          f"at least {MIN_CONTROL_PLANE_MEMORY_MB} MB (kubeadm)")
    if policy.endpoint and facts.endpoint_resolves != "yes":
        yield Finding(host.name, "endpoint", f"loadBalancer.endpoint {policy.endpoint}: the name does not resolve here",
                      "a name every host resolves (DNS or /etc/hosts)")
    elif policy.endpoint and facts.endpoint_answers != "yes":
        yield Finding(host.name, "endpoint", f"loadBalancer.endpoint {policy.endpoint}: no TCP answer from here",
                      "the site's balancer listening, forwarding to every control plane's :6443 (for the first "
                      "`pulumi up`, to the first control plane at least, or kubeadm init cannot finish)")
    if facts.time_synchronized != "yes":
        yield Finding(host.name, "time-sync", f"NTPSynchronized={facts.time_synchronized}",
                      "a synchronised clock (systemd-timesyncd, chrony or ntpd)")


def _duplicates(check: str, values: dict[str, Iterable[str]]) -> Iterable[Finding]:
    owners: dict[str, list[str]] = {}
    for host, host_values in values.items():
        for value in set(host_values):
            if value:
                owners.setdefault(value, []).append(host)
    for value, hosts in sorted(owners.items()):
        if len(hosts) > 1:
            for host in sorted(hosts):
                others = ", ".join(other for other in sorted(hosts) if other != host)
                yield Finding(host, check, f"{value} (also on {others})", "unique to each host (kubeadm)")


def findings(planned: list[PlannedHost], checked: set[str], survey: Survey, policy: Policy) -> list[Finding]:
    """Every problem on the hosts named in `checked` (the hosts being added), comparing them with
    every host whose facts there are; checks named in policy.skip are left out."""
    found: list[Finding] = [Finding(name, "ssh", error, "an SSH session with the stack's key")
                            for name, error in sorted(survey.unreachable.items()) if name in checked]
    by_name = {host.name: host for host in planned}
    for name in sorted(checked):
        if name in survey.facts:
            found.extend(_host_findings(by_name[name], survey.facts[name], policy))
    facts = survey.facts
    found.extend(_duplicates("unique-hostname", {name: [f.hostname] for name, f in facts.items()}))
    found.extend(_duplicates("unique-mac", {name: f.macs for name, f in facts.items()}))
    found.extend(_duplicates("unique-product-uuid", {name: [f.product_uuid] for name, f in facts.items()}))
    if facts:
        offsets = {name: f.clock_offset_s for name, f in facts.items()}
        spread = max(offsets.values()) - min(offsets.values())
        if spread > MAX_CLOCK_SKEW_S:
            for name in sorted(checked & offsets.keys()):
                found.append(Finding(name, "clock-skew", f"{offsets[name]:+.2f} s from this machine "
                                     f"({spread:.2f} s between hosts)",
                                     f"under {MAX_CLOCK_SKEW_S:.0f} s between hosts"))
    if survey.vip_answering and policy.vip and not any(f.in_use_by_kubeha for f in facts.values()):
        found.append(Finding("(vip)", "vip-free", f"{policy.vip} answers already", "an address nothing uses yet"))
    # A uniqueness finding matters where it involves a host being added.
    return [finding for finding in found if finding.check not in policy.skip
            and (finding.host in checked or finding.host == "(vip)")]


def table(found: list[Finding]) -> str:
    rows = [("host", "check", "found", "expected"), *((f.host, f.check, f.found, f.expected) for f in found)]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
                     for row in rows)
