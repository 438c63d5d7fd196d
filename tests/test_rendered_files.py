"""Every file and script kubeha pushes, checked by its real tool."""
from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from components.config.loading import parse_cluster_config
from components.loadbalancer.load_balancer_pair import render_lb_files
from components.nodes.node_steps import ClusterContext, render_join_config
from tests.harness import FAKE_CA_HASH
from tests.validators import haproxy_check, heredoc, inner_script, keepalived_check, kubeadm_validate, shellcheck

MIRRORS = {"docker.io": ["https://mirror.example:5000", "http://10.250.0.1:5001"],
           "registry.k8s.io": ["https://mirror.example:5000/k8s"]}


@pytest.fixture
def cluster_config(stack_config):
    return parse_cluster_config(stack_config)


@pytest.fixture
def lb_files(cluster_config):
    settings = cluster_config.load_balancer
    return {host.name: render_lb_files(settings, host, cluster_config.control_planes) for host in settings.hosts}


@pytest.fixture
def command_scripts(deploy, stack_config):
    """Every script sent to a host, with a package proxy and registry mirrors so those branches
    render too."""
    stack_config["packages"] = {"proxy": "http://10.250.0.1:3142"}
    stack_config["containerd"] = {"registryMirrors": MIRRORS}
    stack_config["firewall"] = {"mode": "managed"}
    stack_config["kubernetes"]["audit"] = {"policy": "request"}
    return deploy(stack_config).scripts()


@pytest.mark.parametrize("lb", ["lb1", "lb2"])
def test_haproxy_accepts_the_rendered_config(lb_files, lb):
    haproxy_check(lb_files[lb]["/etc/haproxy/haproxy.cfg"])


@pytest.mark.parametrize("lb", ["lb1", "lb2"])
def test_keepalived_accepts_the_rendered_config(lb_files, lb):
    keepalived_check(lb_files[lb]["/etc/keepalived/keepalived.conf"], lb_files[lb]["/etc/keepalived/check_apiserver.sh"])


def test_haproxy_rejects_a_broken_config(lb_files):
    with pytest.raises(AssertionError, match="haproxy -c failed"):
        haproxy_check(lb_files["lb1"]["/etc/haproxy/haproxy.cfg"].replace("balance roundrobin", "balance nonsense"))


def test_keepalived_rejects_a_broken_config(lb_files):
    files = lb_files["lb1"]
    with pytest.raises(AssertionError, match="keepalived -t failed"):
        keepalived_check(files["/etc/keepalived/keepalived.conf"].replace("nopreempt", "nopreemptx"),
                         files["/etc/keepalived/check_apiserver.sh"])


def test_check_script_passes_shellcheck(lb_files):
    shellcheck(lb_files["lb1"]["/etc/keepalived/check_apiserver.sh"])


def test_keepalived_peers_are_unicast_and_exclude_self(lb_files):
    conf = lb_files["lb1"]["/etc/keepalived/keepalived.conf"]
    assert "unicast_src_ip 198.51.100.11" in conf
    peers = re.search(r"unicast_peer \{(.*?)\}", conf, re.DOTALL).group(1).split()
    assert peers == ["198.51.100.12"]


def test_keepalived_priorities_differ_and_both_start_backup_without_preemption(lb_files):
    priorities = {lb: re.search(r"priority (\d+)", files["/etc/keepalived/keepalived.conf"]).group(1)
                  for lb, files in lb_files.items()}
    assert priorities == {"lb1": "250", "lb2": "249"}
    for files in lb_files.values():
        assert "state BACKUP" in files["/etc/keepalived/keepalived.conf"]
        assert "nopreempt" in files["/etc/keepalived/keepalived.conf"]


def test_keepalived_keeps_its_adverts_and_checks_on_time_on_a_busy_host(lb_files):
    conf = lb_files["lb1"]["/etc/keepalived/keepalived.conf"]
    assert "vrrp_priority -20" in conf and "vrrp_no_swap" in conf
    assert re.search(r"vrrp_script check_apiserver \{[^}]*fall 2", conf)


def test_haproxy_admin_and_health_ports_listen_on_loopback_only(lb_files):
    cfg = lb_files["lb1"]["/etc/haproxy/haproxy.cfg"]
    assert "bind 127.0.0.1:8081" in cfg and "bind 127.0.0.1:9090" in cfg
    assert "stats auth" not in cfg


def test_haproxy_checks_readyz_over_tls_with_fast_timers(lb_files):
    cfg = lb_files["lb1"]["/etc/haproxy/haproxy.cfg"]
    assert "http-check send meth GET uri /readyz" in cfg
    assert "check-ssl" in cfg and "inter 500ms" in cfg and "fall 2" in cfg
    assert "observe layer4 error-limit 1 on-error mark-down" in cfg


def test_every_remote_script_passes_shellcheck(command_scripts):
    assert len(command_scripts) >= 20
    failures = []
    for name, command_text in sorted(command_scripts.items()):
        try:
            shellcheck(command_text, shell="sh")  # the wrapper runs in the login shell
            shellcheck(inner_script(command_text))
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)


def test_every_remote_script_is_strict_bash(command_scripts):
    for name, command_text in command_scripts.items():
        assert "set -euo pipefail" in inner_script(command_text), name


def test_shellcheck_catches_a_bad_script():
    with pytest.raises(AssertionError, match="shellcheck failed"):
        shellcheck("#!/usr/bin/env bash\nrm -rf $1/*\n")


def test_kubeadm_init_config_passes_kubeadm_config_validate(command_scripts):
    config = heredoc(command_scripts["cluster-init:create"], "KUBEHA_KUBEADM_CONFIG")
    kubeadm_validate(config)
    assert re.findall(r"^kind: (\w+)$", config, re.MULTILINE) == [
        "InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]


def test_kubelet_and_kube_proxy_settings_pass_kubeadm_config_validate(deploy, stack_config):
    stack_config["kubernetes"]["kubelet"] = {"failCgroupV1": False, "maxPods": 50}
    stack_config["kubernetes"]["kubeProxy"] = {"mode": "iptables", "conntrack": {"maxPerCore": 0}}
    stack_config["containerd"] = {"cgroupDriver": "cgroupfs"}
    config = heredoc(deploy(stack_config).named("cluster-init").inputs["create"], "KUBEHA_KUBEADM_CONFIG")
    kubeadm_validate(config)
    assert "cgroupDriver: cgroupfs\n" in config and "failCgroupV1: false\n" in config and "maxPods: 50\n" in config
    assert "kind: KubeProxyConfiguration\n" in config and "  maxPerCore: 0\n" in config


@pytest.mark.parametrize("command, kubeadm", [("cluster-init:create", "kubeadm init"),
                                              ("cp2-kubeadm-join:join", "kubeadm join")])
def test_the_audit_policy_is_written_root_only_before_kubeadm_starts_the_apiserver(command_scripts, command, kubeadm):
    script = inner_script(command_scripts[command])
    policy = yaml.safe_load(heredoc(script, "KUBEHA_AUDIT_POLICY"))
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    assert policy["rules"][-1] == {"level": "Request"}
    assert "chmod 0600 /etc/kubernetes/audit/policy.yaml.partial\n" in script
    assert script.index("KUBEHA_AUDIT_POLICY") < script.index(f"if ! {kubeadm} ")


def test_a_worker_gets_no_audit_policy(command_scripts):
    assert "KUBEHA_AUDIT_POLICY" not in command_scripts["w1-kubeadm-join:join"]


def test_the_apiserver_loads_the_audit_policy_and_writes_its_log_on_the_host(command_scripts):
    config = heredoc(command_scripts["cluster-init:create"], "KUBEHA_KUBEADM_CONFIG")
    [cluster] = [document for document in yaml.safe_load_all(config) if document["kind"] == "ClusterConfiguration"]
    flags = {entry["name"]: entry["value"] for entry in cluster["apiServer"]["extraArgs"]}
    assert flags["audit-policy-file"] == "/etc/kubernetes/audit/policy.yaml"
    assert flags["audit-log-path"] == "/var/log/kubernetes/audit/audit.log"
    assert {(volume["name"], volume["hostPath"], volume["readOnly"]) for volume in cluster["apiServer"]["extraVolumes"]} \
        == {("kubeha-audit-policy", "/etc/kubernetes/audit", True),
            ("kubeha-audit-log", "/var/log/kubernetes/audit", False)}


CONTROL_PLANE_SETTINGS = {
    "apiServer": {"extraArgs": {"profiling": "false", "tracing-config-file": "/etc/kubeha-tracing/tracing.yaml"},
                  "extraVolumes": [{"name": "tracing", "hostPath": "/etc/kubeha-tracing",
                                    "mountPath": "/etc/kubeha-tracing", "readOnly": False,
                                    "pathType": "DirectoryOrCreate"}]},
    "controllerManager": {"extraArgs": {"terminated-pod-gc-threshold": "500"}},
    "scheduler": {"extraArgs": {"v": "2"}},
}


def test_control_plane_flags_and_volumes_pass_kubeadm_config_validate(deploy, stack_config):
    stack_config["kubernetes"].update(CONTROL_PLANE_SETTINGS)
    config = heredoc(deploy(stack_config).named("cluster-init").inputs["create"], "KUBEHA_KUBEADM_CONFIG")
    kubeadm_validate(config)
    [cluster] = [document for document in yaml.safe_load_all(config) if document["kind"] == "ClusterConfiguration"]
    assert {"name": "profiling", "value": "false"} in cluster["apiServer"]["extraArgs"]
    assert cluster["apiServer"]["extraVolumes"][0]["readOnly"] is False
    assert cluster["controllerManager"]["extraArgs"] == [{"name": "terminated-pod-gc-threshold", "value": "500"}]
    assert cluster["scheduler"]["extraArgs"] == [{"name": "v", "value": "2"}]


def test_control_plane_flags_take_kubeadm_v1beta3s_form_before_1_31(deploy, stack_config):
    stack_config["kubernetes"].update(CONTROL_PLANE_SETTINGS, version="1.30.8")
    config = heredoc(deploy(stack_config).named("cluster-init").inputs["create"], "KUBEHA_KUBEADM_CONFIG")
    # The lab's kubeadm (1.34) still reads v1beta3, but deploys 1.33 and later only.
    kubeadm_validate(config.replace("kubernetesVersion: v1.30.8", "kubernetesVersion: v1.34.4"))
    [cluster] = [document for document in yaml.safe_load_all(config) if document["kind"] == "ClusterConfiguration"]
    assert cluster["apiServer"]["extraArgs"]["profiling"] == "false"
    assert cluster["scheduler"]["extraArgs"] == {"v": "2"}


def test_kubeadm_rejects_an_unknown_kubelet_field(deploy, stack_config):
    # kubeha refuses it at preview (test_config); kubeadm, behind it, would too.
    config = heredoc(deploy(stack_config).named("cluster-init").inputs["create"], "KUBEHA_KUBEADM_CONFIG")
    config = config.replace("\nkind: KubeletConfiguration\n", "\nkind: KubeletConfiguration\nfailCgroupv1: false\n")
    with pytest.raises(AssertionError, match='unknown field "failCgroupv1"'):
        kubeadm_validate(config)


@pytest.mark.parametrize("command, control_plane", [("cp2-kubeadm-join:join", True), ("w1-kubeadm-join:join", False)])
def test_kubeadm_join_config_passes_kubeadm_config_validate(command_scripts, command, control_plane):
    config = heredoc(command_scripts[command], "KUBEHA_JOIN_CONFIG")
    # The script fills these from stdin; put in values of the real formats.
    config = config.replace("${KUBEADM_TOKEN}", "abcdef.0123456789abcdef")
    config = config.replace("${KUBEADM_CERTIFICATE_KEY}", "0f" * 32)
    kubeadm_validate(config)
    assert ("\ncontrolPlane:\n" in config) is control_plane


@pytest.mark.parametrize("command, heredoc_marker, address", [
    ("cluster-init:create", "KUBEHA_KUBEADM_CONFIG", "198.51.100.21"), ("cp2-kubeadm-join:join", "KUBEHA_JOIN_CONFIG", "198.51.100.22"),
    ("w1-kubeadm-join:join", "KUBEHA_JOIN_CONFIG", "198.51.100.31")])
def test_every_kubelet_gets_its_configured_address_as_node_ip(command_scripts, command, heredoc_marker, address):
    config = heredoc(command_scripts[command], heredoc_marker)
    assert f'  kubeletExtraArgs:\n  - name: node-ip\n    value: "{address}"' in config


def test_kubeadm_v1beta3_for_kubernetes_before_1_31(deploy, stack_config):
    stack_config["kubernetes"]["version"] = "1.30.8"
    init = deploy(stack_config).named("cluster-init").inputs["create"]
    config = heredoc(init, "KUBEHA_KUBEADM_CONFIG")
    assert "apiVersion: kubeadm.k8s.io/v1beta3" in config


def _join_config(cluster_config, **overrides) -> str:
    cluster = ClusterContext.for_config(cluster_config, ssh=None)
    values = {"token": "abcdef.0123456789abcdef", "ca_cert_hash": FAKE_CA_HASH, "certificate_key": "0f" * 32}
    values.update(overrides)
    return render_join_config(cluster_config.control_planes[1], cluster, control_plane=True, **values)


def test_kubeadm_rejects_a_bad_token(cluster_config):
    with pytest.raises(AssertionError, match="the bootstrap token is invalid"):
        kubeadm_validate(_join_config(cluster_config, token="not-a-token"))


def test_kubeadm_rejects_a_bad_certificate_key(cluster_config):
    with pytest.raises(AssertionError, match="certificate key decoding error"):
        kubeadm_validate(_join_config(cluster_config, certificate_key="not-hex"))


def test_kubeadm_rejects_unknown_fields(cluster_config):
    config = _join_config(cluster_config).replace("nodeRegistration:", "nodeRegistraton:")
    with pytest.raises(AssertionError, match='unknown field "nodeRegistraton"'):
        kubeadm_validate(config)


def test_kubeadm_rejects_a_join_without_ca_pinning(cluster_config):
    config = _join_config(cluster_config).replace(f'    caCertHashes:\n    - "{FAKE_CA_HASH}"\n', "")
    with pytest.raises(AssertionError, match="without caCertHashes can be unsafe"):
        kubeadm_validate(config)


@pytest.mark.parametrize("script", ["tests/lab/lab.sh", "tests/lab/lab-stack.sh", "tests/lab/build-image.sh",
                                    "tests/lab/kubernetes/build.sh",
                                    "tests/lab/kubernetes/packages.sh", "tools/engine/build.sh",
                                    "tools/engine/env.sh", "tools/apt-install.sh", "tools/check-vendor.sh",
                                    ".ci/run"])
def test_project_shell_scripts_pass_shellcheck(script):
    from tests.harness import MAIN
    shellcheck((MAIN.parent / script).read_text())


@pytest.mark.parametrize("script", ["tests/lab/host/kubeha-lab-early.sh", "tests/lab/host/kubeha-lab-images.sh"])
def test_lab_host_scripts_pass_shellcheck_as_posix_sh(script):
    from tests.harness import MAIN
    shellcheck((MAIN.parent / script).read_text(), shell="sh")


def test_each_mirrored_registry_gets_a_hosts_toml_containerd_can_read(command_scripts):
    script = inner_script(command_scripts["w1-containerd:create"])
    bodies = re.findall(r"cat > /etc/containerd/certs.d/([^/]+)/hosts.toml <<'KUBEHA_HOSTS_TOML'\n(.*?)\n"
                        r"KUBEHA_HOSTS_TOML\n", script, re.DOTALL)
    parsed = {registry: tomllib.loads(body) for registry, body in bodies}
    assert parsed["docker.io"]["server"] == "https://registry-1.docker.io"
    assert list(parsed["docker.io"]["host"]) == MIRRORS["docker.io"]  # in the order given
    assert parsed["registry.k8s.io"]["host"]["https://mirror.example:5000/k8s"]["capabilities"] == ["pull", "resolve"]
    assert 'config_path = "/etc/containerd/certs.d"' in script
