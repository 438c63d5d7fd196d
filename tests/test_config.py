"""Bad input fails before any resource is registered, with one message naming the config key."""
from __future__ import annotations

import copy
import re
from typing import Any, Callable

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from tests.conftest import FAKE_PRIVATE_KEY
from tests.harness import run_program_expecting_error

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = config
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _delete(key: str) -> Mutation:
    return lambda config: config.pop(key)


BAD_INPUTS: dict[str, tuple[Mutation, str]] = {
    "vip not an IP": (_set("loadBalancer.vip", "not-an-ip"), "kubeha:loadBalancer.vip: must be an IP address"),
    "vip equals a host address": (_set("loadBalancer.vip", "198.51.100.21"),
                                  "kubeha:loadBalancer.vip: 198.51.100.21 is also the address of controlPlanes[0]"),
    "duplicate host name": (_set("workers.0.name", "cp1"),
                            "kubeha:workers[0].name: duplicate host name 'cp1' (also at controlPlanes[0])"),
    "duplicate host address": (_set("workers.1.address", "198.51.100.11"),
                               "kubeha:workers[1].address: duplicate host address '198.51.100.11' "
                               "(also at loadBalancer.hosts[0])"),
    "router id zero": (_set("loadBalancer.virtualRouterId", 0), "kubeha:loadBalancer.virtualRouterId: must be between 1 and 255"),
    "router id too large": (_set("loadBalancer.virtualRouterId", 256), "kubeha:loadBalancer.virtualRouterId: must be between"),
    "one lb host": (lambda c: c["loadBalancer"]["hosts"].pop(), "kubeha:loadBalancer.hosts: needs at least two hosts"),
    "no control planes": (_set("controlPlanes", []), "kubeha:controlPlanes: needs at least one control plane"),
    "missing control planes": (_delete("controlPlanes"), "kubeha:controlPlanes: is required"),
    "lb port zero": (_set("loadBalancer.port", 0), "kubeha:loadBalancer.port: must be a port between 1 and 65535"),
    "lb port too large": (_set("loadBalancer.port", 70000), "kubeha:loadBalancer.port: must be a port"),
    "ssh port too large": (_set("ssh.port", 65536), "kubeha:ssh.port: must be a port"),
    "unknown mode": (_set("loadBalancer.mode", "f5"), "kubeha:loadBalancer.mode: unknown mode 'f5'"),
    "version not x.y.z": (_set("kubernetes.version", "1.31"), "kubeha:kubernetes.version: must be x.y.z"),
    "version with v": (_set("kubernetes.version", "v1.31.4"), "kubeha:kubernetes.version: must be x.y.z"),
    "unsupported version": (_set("kubernetes.version", "1.27.3"),
                            "kubeha:kubernetes.version: 1.27.3: kubeha supports Kubernetes 1.28, "),
    "kubelet cgroup driver": (_set("kubernetes.kubelet", {"cgroupDriver": "cgroupfs"}),
                              "kubeha:kubernetes.kubelet.cgroupDriver: is set from containerd.cgroupDriver; set it there"),
    "kubelet kind": (_set("kubernetes.kubelet", {"kind": "KubeletConfiguration"}),
                     "kubeha:kubernetes.kubelet.kind: is set by kubeha; give only the configuration's fields"),
    "kube-proxy apiVersion": (_set("kubernetes.kubeProxy", {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1"}),
                              "kubeha:kubernetes.kubeProxy.apiVersion: is set by kubeha"),
    "apiserver flag misspelt": (_set("kubernetes.apiServer", {"extraArgs": {"profilin": "false"}}),
                                "kubeha:kubernetes.apiServer.extraArgs.profilin: is not a flag of kube-apiserver "
                                "1.34.4 (give it without the leading --); did you mean profiling?"),
    "apiserver flag with dashes": (_set("kubernetes.apiServer", {"extraArgs": {"--profiling": "false"}}),
                                   "kubeha:kubernetes.apiServer.extraArgs.--profiling: is not a flag of kube-apiserver"),
    "apiserver flag kubeadm sets": (_set("kubernetes.apiServer", {"extraArgs": {"etcd-servers": "https://e1:2379"}}),
                                    "kubeha:kubernetes.apiServer.extraArgs.etcd-servers: is the control plane's own "
                                    "etcd member"),
    "controller manager flag of a setting": (
        _set("kubernetes.controllerManager", {"extraArgs": {"cluster-cidr": "10.0.0.0/16"}}),
        "kubeha:kubernetes.controllerManager.extraArgs.cluster-cidr: is set from kubernetes.podSubnet; set that"),
    "scheduler flag on two lines": (_set("kubernetes.scheduler", {"extraArgs": {"v": "2\n--profiling=true"}}),
                                    "kubeha:kubernetes.scheduler.extraArgs.v: holds a control character"),
    "extra volume named as kubeadm's": (
        _set("kubernetes.apiServer", {"extraVolumes": [{"name": "k8s-certs", "hostPath": "/srv/a", "mountPath": "/a"}]}),
        "kubeha:kubernetes.apiServer.extraVolumes[0].name: k8s-certs is one of kubeadm's own volumes"),
    "extra volume over kubeadm's mounts": (
        _set("kubernetes.apiServer", {"extraVolumes": [{"name": "etc", "hostPath": "/srv/etc", "mountPath": "/etc"}]}),
        "kubeha:kubernetes.apiServer.extraVolumes[0].mountPath: would cover kubeadm's own mount /etc/kubernetes/pki"),
    "extra volume with a relative path": (
        _set("kubernetes.apiServer", {"extraVolumes": [{"name": "a", "hostPath": "srv/a", "mountPath": "/a"}]}),
        "kubeha:kubernetes.apiServer.extraVolumes[0].hostPath: must be an absolute path"),
    "audit flag in extraArgs": (_set("kubernetes.apiServer", {"extraArgs": {"audit-log-path": "/var/log/a.log"}}),
                                "kubeha:kubernetes.apiServer.extraArgs.audit-log-path: is set from kubernetes.audit"),
    "extra volume named as kubeha's": (
        _set("kubernetes.scheduler", {"extraVolumes": [{"name": "kubeha-x", "hostPath": "/srv/a", "mountPath": "/a"}]}),
        "kubeha:kubernetes.scheduler.extraVolumes[0].name: names starting kubeha- are kubeha's own volumes"),
    "audit policy of another kind": (
        _set("kubernetes.audit", {"policy": {"apiVersion": "v1", "kind": "ConfigMap", "rules": []}}),
        "kubeha:kubernetes.audit.policy: "),
    "audit rule level misspelt": (
        _set("kubernetes.audit", {"policy": {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                             "rules": [{"level": "Metdata"}]}}),
        "kubeha:kubernetes.audit.policy: "),
    "audit log in the root folder": (_set("kubernetes.audit", {"logPath": "/audit.log"}),
                                     "kubeha:kubernetes.audit.logPath: must be a file in a folder"),
    "unknown cgroup driver": (_set("containerd", {"cgroupDriver": "cgroupv2"}), "kubeha:containerd.cgroupDriver: "),
    "unknown containerd key": (_set("containerd", {"snapshotter": "zfs"}),
                               "kubeha:containerd.snapshotter: is not a known key"),
    "subnets overlap": (_set("kubernetes.serviceSubnet", "10.244.128.0/20"),
                        "kubeha:kubernetes.podSubnet: 10.244.0.0/16 overlaps kubernetes.serviceSubnet"),
    "pod subnet holds a host": (_set("kubernetes.podSubnet", "198.51.0.0/16"),
                                "kubeha:kubernetes.podSubnet: 198.51.0.0/16 contains loadBalancer.hosts[0]"),
    "service subnet holds a host": (_set("kubernetes.serviceSubnet", "198.51.100.16/28"),
                                    "kubeha:kubernetes.serviceSubnet: 198.51.100.16/28 contains controlPlanes[0]"),
    "subnet not a network": (_set("kubernetes.podSubnet", "10.244.0.0/33"), "kubeha:kubernetes.podSubnet: must be a network"),
    "host address not an IP": (_set("controlPlanes.1.address", "cp2.example"),
                               "kubeha:controlPlanes[1].address: must be an IP address"),
    "misspelt key": (_set("loadBalancer.virtualRouterID", 5), "kubeha:loadBalancer.virtualRouterID: is not a known key"),
    "misspelt top-level key": (lambda c: c.__setitem__("worker", c.pop("workers")),
                               "kubeha:worker: is not a known key (did you mean workers?)"),
    "unknown top-level key": (_set("kubernetess", {"version": "1.34.4"}),
                              "kubeha:kubernetess: is not a known key (did you mean kubernetes?)"),
    "backup folder relative": (_set("etcd", {"backup": {"directory": "backups"}}),
                               "kubeha:etcd.backup.directory: must be an absolute path"),
    "backup folder with ..": (_set("etcd", {"backup": {"directory": "/var/lib/../etc"}}),
                              "kubeha:etcd.backup.directory: must be an absolute path"),
    "backup folder in etcd's": (_set("etcd", {"backup": {"directory": "/var/lib/etcd/backup"}}),
                                "kubeha:etcd.backup.directory: must be a folder of its own"),
    "backup keep zero": (_set("etcd", {"backup": {"keep": 0}}), "kubeha:etcd.backup.keep: "),
    "backup schedule with a specifier": (_set("etcd", {"backup": {"schedule": "%H:00"}}),
                                         "kubeha:etcd.backup.schedule: must be a systemd OnCalendar value"),
}

# Strings that would close a quote, a heredoc or a YAML scalar where they land, or run a command.
HOSTILE = ['"; touch /tmp/kubeha-canary; echo "', "$(touch /tmp/kubeha-canary)", "`touch /tmp/kubeha-canary`",
           "eth0\nnotify_master /tmp/x", "kubernetes\nKUBEHA_KUBEADM_CONFIG", "x' y"]
HOSTILE_KEYS = {
    "packages.proxy": "must be an http(s) proxy URL",
    "kubernetes.packageRepository": "must be an http(s) URL",
    "kubernetes.clusterName": "must be a name of letters",
    "loadBalancer.interface": "must be a network interface name",
    "network.flannel.interface": "must be a network interface name",
    "network.calico.interface": "must be an interface name or a regular expression",
    "etcd.backup.schedule": "must be a systemd OnCalendar value",
    "etcd.backup.directory": "must be an absolute path",
}


def _set_nested(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


@pytest.mark.parametrize("key", sorted(HOSTILE_KEYS))
@pytest.mark.parametrize("value", HOSTILE)
def test_a_string_that_would_break_out_where_it_lands_is_refused_naming_the_key(stack_config, key, value):
    config = copy.deepcopy(stack_config)
    _set_nested(config, key, value)
    with pytest.raises(ConfigError, match=rf"^kubeha:{re.escape(key)}: {re.escape(HOSTILE_KEYS[key])}"):
        parse_cluster_config(config)


@pytest.mark.parametrize("key, value", [
    ("packages.proxy", "http://10.250.0.1:3142"), ("packages.proxy", "http://proxy.example:3128/"),
    ("kubernetes.packageRepository", "http://10.250.0.1:8080/kubernetes"),
    ("kubernetes.clusterName", "prod.eu-1"), ("network.calico.interface", "ens[0-9]+"),
    ("network.flannel.interface", "host0"), ("etcd.backup.schedule", "*-*-* 02:30:00"),
    ("etcd.backup.schedule", "Mon..Fri 22:00"), ("etcd.backup.schedule", "*:0/15"),
    ("etcd.backup.directory", "/srv/backup/etcd.d"),
])
def test_ordinary_values_pass_the_grammars(stack_config, key, value):
    config = copy.deepcopy(stack_config)
    if key.startswith("network.calico."):
        _set_nested(config, "network.plugin", "calico")
    _set_nested(config, key, value)
    parse_cluster_config(config)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_naming_the_key_before_any_resource(stack_config, case):
    mutate, expected = BAD_INPUTS[case]
    config = copy.deepcopy(stack_config)
    mutate(config)
    error, registered = run_program_expecting_error(config, {"sshPrivateKey": FAKE_PRIVATE_KEY})
    assert isinstance(error, ConfigError)
    assert str(error).startswith(expected), str(error)
    assert registered == []


def test_no_ssh_credential_fails_naming_the_key(stack_config):
    error, registered = run_program_expecting_error(stack_config)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("kubeha:sshPrivateKey: no SSH credential")
    assert registered == []


def test_missing_private_key_file_fails_naming_the_key(stack_config, tmp_path):
    stack_config["ssh"]["privateKeyPath"] = str(tmp_path / "absent")
    error, registered = run_program_expecting_error(stack_config)
    assert str(error).startswith("kubeha:ssh.privateKeyPath: no such file")
    assert registered == []


def test_even_number_of_control_planes_is_allowed_with_a_quorum_warning(stack_config, deploy, caplog):
    stack_config["controlPlanes"].pop()
    deployment = deploy(stack_config)
    assert len(deployment.of_type("kubeha:index:ControlPlaneNode")) == 2
    assert any("quorum" in record.getMessage() for record in caplog.records)


def test_defaults_fill_every_unlisted_key():
    config = parse_cluster_config({
        "loadBalancer": {"vip": "198.51.100.100", "virtualRouterId": 51,
                         "hosts": [{"name": "lb1", "address": "198.51.100.11"},
                                   {"name": "lb2", "address": "198.51.100.12"}]},
        "controlPlanes": [{"name": "cp1", "address": "198.51.100.21"}],
    })
    assert (config.ssh.user, config.ssh.port) == ("root", 22)
    assert (config.load_balancer.listen_port, config.load_balancer.interface) == (8443, "eth0")
    assert config.kubernetes.version == "1.34.4"
    assert config.workers == []
    assert config.apiserver_endpoint == "https://198.51.100.100:8443"


def test_ipv6_vip_gets_brackets_in_the_endpoint(ipv6_stack_config):
    assert parse_cluster_config(ipv6_stack_config).apiserver_endpoint == "https://[2001:db8::100]:8443"


@pytest.mark.parametrize("key, value, message", [
    ("loadBalancer.vip", "2001:db8::100", "2001:db8::100 is IPv6, but the cluster is IPv4"),
    ("workers.0.address", "2001:db8::31", "2001:db8::31 is IPv6, but the cluster is IPv4"),
    ("workers.0.address", "::ffff:198.51.100.11", "is an IPv4-mapped IPv6 address; write it as 198.51.100.11"),
    ("controlPlanes.1.address", "127.0.0.2", "127.0.0.2 is a loopback address"),
    ("loadBalancer.vip", "0.0.0.0", "0.0.0.0 is the unspecified address"),
    ("loadBalancer.vip", "224.0.0.18", "224.0.0.18 is a multicast address"),
    ("workers.1.address", "169.254.0.7", "169.254.0.7 is a link-local address"),
])
def test_an_address_no_other_host_can_reach_or_of_another_family_is_refused(stack_config, key, value, message):
    config = copy.deepcopy(stack_config)
    _set(key, value)(config)
    with pytest.raises(ConfigError, match=rf"^kubeha:{re.escape(key.replace('.0.', '[0].').replace('.1.', '[1].'))}: "
                                          rf".*{re.escape(message)}"):
        parse_cluster_config(config)


@pytest.mark.parametrize("subnets, key, message", [
    ({"podSubnet": "fd00:10:244::/56"}, "podSubnet", "fd00:10:244::/56 is IPv6 and kubernetes.serviceSubnet "
                                                      "10.96.0.0/12 IPv4; kubeha builds single-stack clusters"),
    ({"serviceSubnet": "10.96.0.0/11"}, "serviceSubnet", "10.96.0.0/11 is too large: the apiserver takes at most a /12"),
    ({"serviceSubnet": "10.96.0.0/29"}, "serviceSubnet", "10.96.0.0/29 is too small"),
    ({"podSubnet": "10.244.0.0/25"}, "podSubnet", "10.244.0.0/25: each node gets a /24 of it"),
    ({"podSubnet": "10.0.0.0/7"}, "podSubnet", "10.0.0.0/7: each node gets a /24 of it (the controller manager's "
                                               "default), so it must be a /8 to /23"),
    ({"podSubnet": "10.244.0.0/23"}, "podSubnet", "10.244.0.0/23 holds 2 node ranges of /24, fewer than the 5 nodes"),
])
def test_a_subnet_of_the_wrong_size_or_family_is_refused(stack_config, subnets, key, message):
    config = copy.deepcopy(stack_config)
    config["kubernetes"] = {**config.get("kubernetes", {}), **subnets}
    with pytest.raises(ConfigError, match=rf"^kubeha:kubernetes\.{key}: {re.escape(message)}"):
        parse_cluster_config(config)


def test_an_ipv6_pod_subnet_larger_than_sixteen_bits_of_node_ranges_is_refused(ipv6_stack_config):
    config = ipv6_stack_config
    config["kubernetes"]["podSubnet"] = "fd00:10::/40"
    with pytest.raises(ConfigError, match=r"^kubeha:kubernetes\.podSubnet: fd00:10::/40: each node gets a /64 of it"):
        parse_cluster_config(config)


def test_config_error_is_a_clean_pulumi_run_error():
    import pulumi
    assert issubclass(ConfigError, pulumi.RunError)
    with pytest.raises(ConfigError):
        parse_cluster_config({})


@pytest.mark.parametrize("mode", ["keepalived-haproxy", "static-pods"])
def test_the_vrrp_router_id_is_required_where_keepalived_runs(stack_config, mode):
    stack_config["loadBalancer"].pop("virtualRouterId")
    stack_config["loadBalancer"]["mode"] = mode
    if mode == "static-pods":
        stack_config["loadBalancer"].pop("hosts")
    with pytest.raises(ConfigError, match="^kubeha:loadBalancer.virtualRouterId: is required with loadBalancer.mode "
                                          f"{mode}: a VRRP router id"):
        parse_cluster_config(stack_config)


def test_a_host_interface_overrides_the_load_balancer_interface(stack_config):
    stack_config["loadBalancer"]["hosts"][1]["interface"] = "bond0"
    config = parse_cluster_config(stack_config)
    assert [config.load_balancer.interface_of(host) for host in config.load_balancer.hosts] == ["eth0", "bond0"]


def test_a_host_interface_where_the_host_holds_no_vip_is_refused(stack_config):
    stack_config["workers"][0]["interface"] = "eth1"
    with pytest.raises(ConfigError, match=r"^kubeha:workers\[0\].interface: is not used: with loadBalancer.mode "
                                          "keepalived-haproxy only loadBalancer.hosts hold the VIP"):
        parse_cluster_config(stack_config)


def test_a_host_key_that_is_no_openssh_public_key_is_refused(stack_config):
    stack_config["ssh"]["hostKeys"] = {"cp1": "SHA256:abcdef"}
    with pytest.raises(ConfigError, match=r"^kubeha:ssh.hostKeys.cp1: must be an OpenSSH public key line"):
        parse_cluster_config(stack_config)


def test_a_host_key_for_an_unknown_host_is_refused(stack_config):
    stack_config["ssh"]["hostKeys"] = {"cp9": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0 root@cp9"}
    with pytest.raises(ConfigError, match=r"^kubeha:ssh.hostKeys.cp9: names no host"):
        parse_cluster_config(stack_config)


def test_a_drain_timeout_below_ten_seconds_is_refused(stack_config):
    stack_config["kubernetes"]["drainTimeoutSeconds"] = 5
    with pytest.raises(ConfigError, match=r"^kubeha:kubernetes.drainTimeoutSeconds: .*greater than or equal to 10"):
        parse_cluster_config(stack_config)


def test_an_upgrade_batch_of_no_workers_is_refused(stack_config):
    stack_config["upgrade"] = {"maxUnavailableWorkers": 0}
    with pytest.raises(ConfigError, match=r"^kubeha:upgrade.maxUnavailableWorkers: .*greater than or equal to 1"):
        parse_cluster_config(stack_config)


@pytest.mark.parametrize("mirrors, message", [
    ({"registry.k8s.io": []}, "give at least one mirror URL"),
    ({"registry.k8s.io": ["ftp://mirror"]}, "is not an http"),
    ({"https://registry.k8s.io": ["https://mirror"]}, "is not a registry host"),
])
def test_bad_registry_mirrors_are_refused_naming_the_key(stack_config, mirrors, message):
    stack_config["containerd"] = {"registryMirrors": mirrors}
    with pytest.raises(ConfigError, match=rf"kubeha:containerd.registryMirrors.*{message}"):
        parse_cluster_config(stack_config)


def test_a_misspelt_host_key_is_reported_as_unknown_not_as_a_missing_address(stack_config):
    stack_config["workers"][0] = {"name": "w1", "adress": "198.51.100.31"}
    with pytest.raises(ConfigError, match=r"^kubeha:workers\[0\].adress: is not a known key"):
        parse_cluster_config(stack_config)


@pytest.mark.parametrize("plugin, unused", [("calico", "flannel"), ("flannel", "calico"), ("none", "flannel")])
def test_settings_of_a_pod_network_not_in_use_are_refused(stack_config, plugin, unused):
    stack_config["network"] = {"plugin": plugin, unused: {"mtu": 1400}}
    with pytest.raises(ConfigError, match=rf"^kubeha:network.{unused}: is not used: network.plugin is {plugin}"):
        parse_cluster_config(stack_config)


@pytest.mark.parametrize("port, taken_by", [(10248, "the kubelet's health endpoint"), (10256, "kube-proxy's health"),
                                            (2381, "etcd metrics"), (10249, "kube-proxy metrics")])
def test_a_port_of_a_nodes_own_components_is_refused_where_the_proxy_runs_on_the_nodes(stack_config, port, taken_by):
    stack_config["loadBalancer"] = {"mode": "local-nginx", "statsPort": port}
    with pytest.raises(ConfigError, match=rf"^kubeha:loadBalancer.statsPort: {port} is taken by {taken_by}"):
        parse_cluster_config(stack_config)


@pytest.mark.parametrize("user", ["", "root; id", "Root", "a b", "x" * 33])
def test_an_ssh_user_that_is_no_login_name_is_refused(stack_config, user):
    stack_config["ssh"]["user"] = user
    with pytest.raises(ConfigError, match=r"^kubeha:ssh.user: "):
        parse_cluster_config(stack_config)


# w1's real-format ed25519 key line (the blob names its own type).
ED25519_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@w1"


def test_a_well_formed_host_key_is_accepted(stack_config):
    stack_config["ssh"]["hostKeys"] = {"w1": ED25519_LINE}
    assert parse_cluster_config(stack_config).ssh.host_keys == {"w1": ED25519_LINE}


@pytest.mark.parametrize("line, message", [
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJ", "is not valid base64"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "is not a ssh-rsa key"),
])
def test_a_host_key_whose_data_does_not_decode_is_refused_naming_the_host(stack_config, line, message):
    stack_config["ssh"]["hostKeys"] = {"w1": line}
    with pytest.raises(ConfigError, match=rf"^kubeha:ssh.hostKeys.w1: .*{message}"):
        parse_cluster_config(stack_config)


def test_a_private_key_in_plain_text_in_the_stack_file_is_refused(stack_config):
    config = {**stack_config, "sshPrivateKey": FAKE_PRIVATE_KEY}  # a plain config value, not a secret
    error, registered = run_program_expecting_error(config)
    assert str(error).startswith("kubeha:sshPrivateKey: is stored in plain text"), str(error)
    assert registered == []


@pytest.mark.parametrize("value", ["~/.ssh/id_ed25519", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA root@x"])
def test_a_private_key_that_is_a_path_or_a_public_key_is_refused(stack_config, value):
    error, registered = run_program_expecting_error(stack_config, {"sshPrivateKey": value})
    assert str(error).startswith("kubeha:sshPrivateKey: must be a private key file's content"), str(error)
    assert registered == []


def test_a_private_key_file_that_holds_a_public_key_is_refused(stack_config, tmp_path):
    public = tmp_path / "id_ed25519.pub"
    public.write_text(ED25519_LINE + "\n")
    stack_config["ssh"]["privateKeyPath"] = str(public)
    error, registered = run_program_expecting_error(stack_config)
    assert str(error).startswith(f"kubeha:ssh.privateKeyPath ({public}): must be a private key"), str(error)
    assert registered == []


# The lab's own settings (tests/lab/lab-stack.sh): every one a real field of its configuration.
LAB_KUBELET = {"failCgroupV1": False, "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
               "evictionHard": {"memory.available": "100Mi", "nodefs.available": "5%"}}
LAB_KUBE_PROXY = {"mode": "iptables", "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s",
                                                    "tcpCloseWaitTimeout": "0s"}}


def _with_kubernetes(stack_config: dict[str, Any], **settings: Any) -> dict[str, Any]:
    config = copy.deepcopy(stack_config)
    config.setdefault("kubernetes", {}).update(settings)
    return config


def test_flag_values_written_as_yaml_booleans_and_numbers_are_their_text(stack_config):
    config = parse_cluster_config(_with_kubernetes(stack_config, apiServer={"extraArgs": {
        "profiling": False, "v": 2}}))
    assert config.kubernetes.api_server.extra_args == {"profiling": "false", "v": "2"}


def test_a_whole_audit_policy_is_taken_as_given(stack_config):
    policy = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
              "rules": [{"level": "None", "users": ["system:kube-proxy"]}, {"level": "RequestResponse"}]}
    config = parse_cluster_config(_with_kubernetes(stack_config, audit={"policy": policy, "maxAge": 7}))
    assert config.kubernetes.audit is not None and config.kubernetes.audit.policy_document() == policy
    assert config.kubernetes.apiserver_arguments()["audit-log-maxage"] == "7"


def test_real_kubelet_and_kube_proxy_fields_are_accepted(stack_config):
    config = parse_cluster_config(_with_kubernetes(stack_config, kubelet=LAB_KUBELET, kubeProxy=LAB_KUBE_PROXY))
    assert config.kubernetes.kubelet == LAB_KUBELET


@pytest.mark.parametrize("setting, fields, message", [
    ("kubelet", {"failSwapon": False}, "kubelet.failSwapon: is not a field of this configuration; did you mean failSwapOn?"),
    ("kubelet", {"failSwapOn": "false"}, "kubelet.failSwapOn: must be true or false (got 'false')"),
    ("kubelet", {"maxPods": "110"}, "kubelet.maxPods: must be a whole number (got '110')"),
    ("kubelet", {"shutdownGracePeriod": "30 seconds"}, "kubelet.shutdownGracePeriod: must be a duration"),
    ("kubelet", {"systemReserved": {"memory": 512}}, "kubelet.systemReserved.memory: must be a string (got 512)"),
    ("kubelet", {"registerWithTaints": [{"key": "a", "efect": "NoSchedule"}]},
     "kubelet.registerWithTaints[0].efect: is not a field of this configuration; did you mean effect?"),
    ("kubeProxy", {"conntrack": {"maxPerCore": 0, "tcpTimeout": "1h"}},
     "kubeProxy.conntrack.tcpTimeout: is not a field of this configuration"),
    ("kubeProxy", {"iptables": "masqueradeAll"}, "kubeProxy.iptables: must be a mapping of fields"),
])
def test_a_misspelt_or_mistyped_component_config_field_is_refused_naming_it(stack_config, setting, fields, message):
    with pytest.raises(ConfigError, match=rf"^kubeha:kubernetes\.{re.escape(message)}"):
        parse_cluster_config(_with_kubernetes(stack_config, **{setting: fields}))


@pytest.mark.parametrize("setting, field, comes_from", [
    ("kubelet", "staticPodPath", "kubeadm's /etc/kubernetes/manifests"),
    ("kubelet", "clusterDNS", "kubernetes.serviceSubnet"),
    ("kubelet", "healthzPort", "10248"),
    ("kubeProxy", "clusterCIDR", "kubernetes.podSubnet"),
    ("kubeProxy", "hostnameOverride", "each node's own name"),
    ("kubeProxy", "metricsBindAddress", "10249"),
])
def test_a_component_config_field_kubeha_sets_is_refused_saying_where_it_comes_from(
        stack_config, setting, field, comes_from):
    with pytest.raises(ConfigError, match=rf"^kubeha:kubernetes\.{setting}\.{field}: .*{re.escape(comes_from)}"):
        parse_cluster_config(_with_kubernetes(stack_config, **{setting: {field: "x"}}))


def test_a_proxy_url_with_credentials_is_refused_as_it_would_be_stored_in_plain_text(stack_config):
    config = copy.deepcopy(stack_config)
    _set_nested(config, "packages.proxy", "http://user:p%40ss@proxy.example:3128/")
    with pytest.raises(ConfigError, match=r"^kubeha:packages\.proxy: holds credentials \(user:password@\), which "
                                          r"would be stored in plain text"):
        parse_cluster_config(config)


@pytest.mark.parametrize("plugin, port", [("flannel", 8475), ("calico", 9099)])
def test_the_pod_networks_health_port_is_refused_where_the_proxy_runs_on_the_nodes(stack_config, plugin, port):
    stack_config["loadBalancer"] = {"mode": "local-nginx", "healthPort": port}
    stack_config["network"] = {"plugin": plugin}
    with pytest.raises(ConfigError, match=rf"^kubeha:loadBalancer.healthPort: {port} is {plugin}'s health endpoint"):
        parse_cluster_config(stack_config)


@pytest.mark.parametrize("port", [30000, 32767])
def test_a_nodeport_is_refused_where_the_proxy_runs_on_the_nodes(stack_config, port):
    stack_config["loadBalancer"] = {"mode": "local-nginx", "port": port}
    with pytest.raises(ConfigError, match=rf"^kubeha:loadBalancer.port: {port} is in kube-proxy's NodePort range"):
        parse_cluster_config(stack_config)


def test_dedicated_load_balancer_hosts_may_use_a_nodes_port(stack_config):
    stack_config["loadBalancer"]["statsPort"] = 30080  # lb1 and lb2 run no Kubernetes
    assert parse_cluster_config(stack_config).load_balancer.stats_port == 30080
