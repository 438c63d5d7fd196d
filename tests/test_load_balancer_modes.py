"""The four loadBalancer modes under mocks: who gets which files and steps, the endpoint kubeadm
uses, certSANs, the rolling order, and bad input per mode. Rendered files go through their real
tools (nginx -t, haproxy -c, keepalived -t, kubernetes-validate, shellcheck)."""
from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.loadbalancer.node_load_balancer import NodeLoadBalancing
from tests.conftest import FAKE_PRIVATE_KEY
from tests.harness import run_program_expecting_error, unsecret
from tests.validators import (
    haproxy_check,
    heredoc,
    inner_script,
    keepalived_check,
    kubeadm_validate,
    manifest_check,
    nginx_check,
    shellcheck,
)

COMMAND = "command:remote:Command"
CONTROL_PLANES = ["cp1", "cp2", "cp3"]
WORKERS = ["w1", "w2"]
EXTERNAL_ENDPOINT = "api.example.org:6443"  # the site's balancer, by name
# The init script's switch of kube-vip's kubeconfig mount to super-admin.conf.
TO_SUPER_ADMIN = "\\1path: /etc/kubernetes/super-admin.conf#"


def in_mode(stack_config: dict[str, Any], mode: str, **settings: Any) -> dict[str, Any]:
    """The fixture config switched to `mode`, without the keys that mode does not use."""
    lb = {"mode": mode, "vip": "198.51.100.100", "interface": "eth0"}
    if mode == "static-pods":
        lb["virtualRouterId"] = 51
    if mode == "local-nginx":
        lb = {"mode": mode}
    if mode == "external":
        lb = {"mode": mode, "endpoint": EXTERNAL_ENDPOINT}
    lb.update(settings)
    stack_config["loadBalancer"] = lb
    return stack_config


def script(deployment, name: str) -> str:
    return inner_script(unsecret(deployment.named(name).inputs["create"]))


def join_script(deployment, joiner: str) -> str:
    return inner_script(deployment.named(f"{joiner}-kubeadm-join").inputs["join"])


def kubeadm_documents(deployment) -> dict[str, dict]:
    config = heredoc(script(deployment, "cluster-init"), "KUBEHA_KUBEADM_CONFIG")
    return {document["kind"]: document for document in yaml.safe_load_all(config)}


def steps(deployment, suffix: str) -> list[str]:
    return sorted(r.name.removesuffix(suffix) for r in deployment.of_type(COMMAND) if r.name.endswith(suffix))


def load_balancing(config: dict[str, Any]) -> NodeLoadBalancing:
    cluster = parse_cluster_config(config)
    return NodeLoadBalancing(cluster.load_balancer, cluster.kubernetes, cluster.control_planes, cluster.packages)


@pytest.fixture(params=["static-pods", "kube-vip", "local-nginx", "external"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def mode_deployment(deploy, stack_config, mode):
    return deploy(in_mode(stack_config, mode))


# --- what runs where ---------------------------------------------------------------------------

def test_no_dedicated_load_balancer_outside_its_mode(mode_deployment):
    assert mode_deployment.of_type("kubeha:index:LoadBalancerPair") == []
    assert not [r for r in mode_deployment.of_type(COMMAND) if r.name.startswith("lb-")]


@pytest.mark.parametrize("mode, nodes", [("static-pods", CONTROL_PLANES), ("kube-vip", CONTROL_PLANES),
                                         ("local-nginx", CONTROL_PLANES + WORKERS), ("external", [])])
def test_load_balancing_step_on_exactly_the_nodes_that_run_it(mode_deployment, mode, nodes):
    assert steps(mode_deployment, "-load-balancing") == sorted(nodes)


def test_static_pods_mode_places_haproxy_and_keepalived_with_their_configs(deploy, stack_config):
    placed = script(deploy(in_mode(stack_config, "static-pods")), "cp2-load-balancing")
    for path in ("/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/etc/keepalived/check_apiserver.sh",
                 "/etc/kubernetes/manifests/haproxy.yaml", "/etc/kubernetes/manifests/keepalived.yaml"):
        assert f'"{path}"' in placed, path


def test_static_pods_manifests_are_written_after_the_files_they_mount(deploy, stack_config):
    placed = script(deploy(in_mode(stack_config, "static-pods")), "cp1-load-balancing")
    assert placed.index('"/etc/haproxy/haproxy.cfg.kubeha-new"') < placed.index(
        '"/etc/kubernetes/manifests/haproxy.yaml.kubeha-new"')


def test_kube_vip_mode_places_only_the_kube_vip_manifest(deploy, stack_config):
    placed = script(deploy(in_mode(stack_config, "kube-vip")), "cp3-load-balancing")
    assert '"/etc/kubernetes/manifests/kube-vip.yaml"' in placed
    assert "haproxy" not in placed and "keepalived" not in placed


def test_local_nginx_mode_installs_and_configures_nginx_on_every_node(deploy, stack_config):
    deployment = deploy(in_mode(stack_config, "local-nginx"))
    assert steps(deployment, "-local-proxy-install") == sorted(CONTROL_PLANES + WORKERS)
    assert '"/etc/nginx/nginx.conf"' in script(deployment, "w1-load-balancing")
    assert "libnginx-mod-stream" in script(deployment, "w1-local-proxy-install")


def test_local_proxy_haproxy_is_offered(deploy, stack_config):
    deployment = deploy(in_mode(stack_config, "local-nginx", localProxy="haproxy"))
    applied = script(deployment, "w2-load-balancing")
    assert '"/etc/haproxy/haproxy.cfg"' in applied and "bind 127.0.0.1:8443" in applied


# --- the endpoint ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, endpoint", [("static-pods", "198.51.100.100:8443"),
                                            ("kube-vip", "198.51.100.100:6443"),
                                            ("local-nginx", "127.0.0.1:8443"),
                                            ("external", EXTERNAL_ENDPOINT)])
def test_kubeadm_uses_the_modes_endpoint_and_has_it_in_cert_sans(mode_deployment, mode, endpoint):
    cluster = kubeadm_documents(mode_deployment)["ClusterConfiguration"]
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert endpoint.rsplit(":", 1)[0] in cluster["apiServer"]["certSANs"]


@pytest.mark.parametrize("joiner", ["cp2", "w1"])
def test_joins_discover_through_the_modes_endpoint(deploy, stack_config, joiner):
    deployment = deploy(in_mode(stack_config, "local-nginx"))
    join = yaml.safe_load(heredoc(join_script(deployment, joiner), "KUBEHA_JOIN_CONFIG"))
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "127.0.0.1:8443"


@pytest.mark.parametrize("mode, expected", [("static-pods", True), ("kube-vip", True), ("local-nginx", False),
                                             ("external", False)])
def test_kubeadm_accepts_the_prefilled_manifests_folder_only_with_static_pods(mode_deployment, mode, expected):
    init = kubeadm_documents(mode_deployment)["InitConfiguration"]
    ignored = init["nodeRegistration"].get("ignorePreflightErrors", [])
    assert ("DirAvailable--etc-kubernetes-manifests" in ignored) is expected
    join = yaml.safe_load(heredoc(join_script(mode_deployment, "cp2"), "KUBEHA_JOIN_CONFIG"))
    assert ("DirAvailable--etc-kubernetes-manifests" in join["nodeRegistration"].get(
        "ignorePreflightErrors", [])) is expected


def test_local_nginx_outputs_point_clients_off_the_cluster_at_the_lead_control_plane(deploy, stack_config):
    deployment = deploy(in_mode(stack_config, "local-nginx"))
    assert deployment.exports["apiserverEndpoint"] == "https://198.51.100.21:6443"
    assert deployment.exports["controlPlaneEndpoint"] == "https://127.0.0.1:8443"
    assert deployment.exports["vip"] is None
    assert "    server: https://198.51.100.21:6443\n" in deployment.exports["kubeconfig"]


def test_external_mode_outputs_the_backends_the_site_must_configure(deploy, stack_config):
    deployment = deploy(in_mode(stack_config, "external"))
    assert [backend["address"] for backend in deployment.exports["loadBalancerBackends"]] == [
        "198.51.100.21:6443", "198.51.100.22:6443", "198.51.100.23:6443"]
    assert deployment.exports["loadBalancerBackends"][0]["healthCheck"].startswith("GET /readyz over HTTPS")
    assert deployment.exports["apiserverEndpoint"] == f"https://{EXTERNAL_ENDPOINT}"
    assert deployment.exports["vip"] is None and deployment.exports["loadBalancers"] == []


def test_the_backends_follow_the_control_planes(deploy, stack_config):
    stack_config["controlPlanes"].append({"name": "cp4", "address": "198.51.100.24"})
    backends = deploy(in_mode(stack_config, "external")).exports["loadBalancerBackends"]
    assert backends[-1] == {"name": "cp4", "address": "198.51.100.24:6443",
                            "healthCheck": "GET /readyz over HTTPS (the cluster CA), expect 200"}


def test_other_modes_have_no_backends_output(deployment):
    assert deployment.exports["loadBalancerBackends"] is None


def test_external_mode_init_config_passes_kubeadm_config_validate(deploy, stack_config):
    kubeadm_validate(heredoc(script(deploy(in_mode(stack_config, "external")), "cluster-init"),
                             "KUBEHA_KUBEADM_CONFIG"))


@pytest.mark.parametrize("mode", ["keepalived-haproxy", "static-pods", "kube-vip", "local-nginx", "external"])
def test_the_mode_is_a_stack_output(deploy, stack_config, mode):
    if mode != "keepalived-haproxy":
        in_mode(stack_config, mode)
    assert deploy(stack_config).exports["loadBalancerMode"] == mode


# --- rolling updates that follow the control-plane list -----------------------------------------

def test_node_load_balancing_rolls_one_node_at_a_time_control_planes_first(deploy, stack_config):
    deployment = deploy(in_mode(stack_config, "local-nginx"))
    order = ["cp1", "cp2", "cp3", "w1", "w2"]
    for earlier, later in zip(order, order[1:], strict=False):
        assert deployment.depends_on(f"{later}-load-balancing", f"{earlier}-load-balancing")


@pytest.mark.parametrize("step, node", [("cluster-init", "cp1"), ("cp2-kubeadm-join", "cp2"), ("w1-kubeadm-join", "w1")])
def test_kubeadm_runs_after_the_nodes_own_load_balancing(deploy, stack_config, step, node):
    deployment = deploy(in_mode(stack_config, "local-nginx"))
    assert deployment.depends_on(step, f"{node}-load-balancing")


@pytest.mark.parametrize("mode", ["static-pods", "local-nginx"])
def test_adding_a_control_plane_changes_every_proxy_nodes_step(deploy, stack_config, mode):
    before = deploy(in_mode(stack_config, mode))
    stack_config["controlPlanes"].append({"name": "cp4", "address": "198.51.100.24"})
    after = deploy(stack_config)
    for node in steps(before, "-load-balancing"):
        assert script(before, f"{node}-load-balancing") != script(after, f"{node}-load-balancing"), node
        assert "198.51.100.24:6443" in script(after, f"{node}-load-balancing"), node


def test_static_pod_manifests_change_with_their_config(stack_config):
    before = load_balancing(in_mode(stack_config, "static-pods"))
    after = load_balancing(in_mode(stack_config, "static-pods", healthPort=8082))
    host = before.control_planes[0]
    assert before.static_pod_manifests(host)["haproxy.yaml"] != after.static_pod_manifests(host)["haproxy.yaml"]


# --- kube-vip's bootstrap on Kubernetes >= 1.29 --------------------------------------------------

def test_kube_vip_on_the_initialising_node_uses_super_admin_conf_during_init_on_1_29_and_later(deploy, stack_config):
    init = script(deploy(in_mode(stack_config, "kube-vip")), "cluster-init")
    assert TO_SUPER_ADMIN in init
    assert init.index("kube_vip_on_super_admin_conf\n") < init.index("if ! kubeadm init") < init.rindex(
        "kube_vip_on_admin_conf")


@pytest.mark.parametrize("node", ["cp1", "cp2"])
def test_kube_vip_placement_never_uses_super_admin_conf(deploy, stack_config, node):
    # Which node initialised the cluster is not the placement's business: a later lead keeps admin.conf.
    deployment = deploy(in_mode(stack_config, "kube-vip"))
    assert TO_SUPER_ADMIN not in script(deployment, f"{node}-load-balancing")


def test_kube_vip_before_1_29_uses_admin_conf_throughout(deploy, stack_config):
    stack_config["kubernetes"]["version"] = "1.28.15"
    deployment = deploy(in_mode(stack_config, "kube-vip"))
    assert TO_SUPER_ADMIN not in script(deployment, "cp1-load-balancing")
    assert "super-admin.conf" not in script(deployment, "cluster-init")


def test_kube_vip_leader_election_settings_reach_the_manifest(stack_config):
    lb = load_balancing(in_mode(stack_config, "kube-vip", kubeVip={"leaseDuration": 15, "renewDeadline": 10,
                                                                    "retryPeriod": 2}))
    env = {item["name"]: item.get("value") for item in yaml.safe_load(
        lb.render_kube_vip_manifest(lb.control_planes[0]))["spec"]["containers"][0]["env"]}
    assert (env["vip_leaseduration"], env["vip_renewdeadline"], env["vip_retryperiod"]) == ("15", "10", "2")
    assert (env["address"], env["vip_interface"], env["port"]) == ("198.51.100.100", "eth0", "6443")


# --- images ------------------------------------------------------------------------------------

def test_images_are_pinned_defaults(stack_config):
    lb = load_balancing(in_mode(stack_config, "static-pods"))
    assert lb.image("haproxy") == "docker.io/library/haproxy:3.0.7"


def test_image_repository_moves_the_default_images_to_the_mirror(deploy, stack_config):
    stack_config["kubernetes"]["imageRepository"] = "registry.example:5000/k8s"
    lb = load_balancing(in_mode(stack_config, "kube-vip"))
    assert lb.image("kube_vip") == "registry.example:5000/k8s/kube-vip/kube-vip:v1.2.3"
    documents = kubeadm_documents(deploy(stack_config))
    assert documents["ClusterConfiguration"]["imageRepository"] == "registry.example:5000/k8s"


def test_a_configured_image_is_used_as_given(stack_config):
    lb = load_balancing(in_mode(stack_config, "static-pods", images={"keepalived": "mirror.example/keepalived:2.2.8"}))
    assert lb.image("keepalived") == "mirror.example/keepalived:2.2.8"


# --- bad input per mode ------------------------------------------------------------------------

BAD_INPUTS = {
    "static-pods with LB hosts": ("static-pods", {"hosts": [{"name": "lb1", "address": "198.51.100.11"}]},
                                  "kubeha:loadBalancer.hosts: is not used with loadBalancer.mode static-pods"),
    "static-pods on the apiserver port": ("static-pods", {"port": 6443},
                                          "kubeha:loadBalancer.port: 6443 is taken by kube-apiserver"),
    "static-pods without a VIP": ("static-pods", {"vip": None}, "kubeha:loadBalancer.vip: is required"),
    "kube-vip on another port": ("kube-vip", {"port": 8443}, "kubeha:loadBalancer.port: kube-vip moves only"),
    "kube-vip lease out of order": ("kube-vip", {"kubeVip": {"leaseDuration": 3, "renewDeadline": 3}},
                                    "kubeha:loadBalancer.kubeVip: needs 0 < retryPeriod < renewDeadline"),
    "kube-vip with a local proxy": ("kube-vip", {"localProxy": "nginx"},
                                    "kubeha:loadBalancer.localProxy: is not used with loadBalancer.mode kube-vip"),
    "local-nginx with a VIP": ("local-nginx", {"vip": "198.51.100.100"},
                               "kubeha:loadBalancer.vip: is not used with loadBalancer.mode local-nginx"),
    "local-nginx on the kubelet port": ("local-nginx", {"port": 10250},
                                        "kubeha:loadBalancer.port: 10250 is taken by kubelet"),
    "local-nginx health port on the proxy port": ("local-nginx", {"healthPort": 8443},
                                                  "kubeha:loadBalancer.healthPort: 8443 is also loadBalancer.port"),
    "unknown local proxy": ("local-nginx", {"localProxy": "envoy"}, "kubeha:loadBalancer.localProxy:"),
    "image on latest": ("static-pods", {"images": {"haproxy": "haproxy:latest"}},
                        "kubeha:loadBalancer.images.haproxy: must pin a version"),
    "image without a tag": ("kube-vip", {"images": {"kubeVip": "ghcr.io/kube-vip/kube-vip"}},
                            "kubeha:loadBalancer.images.kubeVip: must be an image reference with a version"),
    "images with local-nginx": ("local-nginx", {"images": {"haproxy": "haproxy:3.0.7"}},
                                "kubeha:loadBalancer.images: is not used with loadBalancer.mode local-nginx"),
    "external without an endpoint": ("external", {"endpoint": None},
                                     "kubeha:loadBalancer.endpoint: is required with loadBalancer.mode external"),
    "external endpoint without a port": ("external", {"endpoint": "api.example.org"},
                                         "kubeha:loadBalancer.endpoint: must be host:port"),
    "external endpoint that is a command": ("external", {"endpoint": "api$(id).example.org:6443"},
                                            "kubeha:loadBalancer.endpoint: must be host:port"),
    "external with a VIP": ("external", {"vip": "198.51.100.100"},
                            "kubeha:loadBalancer.vip: is not used with loadBalancer.mode external"),
    "external with a port of its own": ("external", {"port": 8443},
                                        "kubeha:loadBalancer.port: is not used with loadBalancer.mode external"),
    "external with LB hosts": ("external", {"hosts": [{"name": "lb1", "address": "198.51.100.11"}]},
                               "kubeha:loadBalancer.hosts: is not used with loadBalancer.mode external"),
    "keepalived-haproxy without hosts": ("keepalived-haproxy", {},
                                         "kubeha:loadBalancer.hosts: needs at least two hosts for failover (got 0)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_per_mode_names_the_key_and_registers_nothing(stack_config, case):
    mode, settings, message = BAD_INPUTS[case]
    config = in_mode(stack_config, mode, **settings)
    config["loadBalancer"] = {key: value for key, value in config["loadBalancer"].items() if value is not None}
    error, registrations = run_program_expecting_error(config, {"sshPrivateKey": FAKE_PRIVATE_KEY})
    assert isinstance(error, ConfigError)
    assert str(error).startswith(message), str(error)
    assert registrations == []


def test_bad_image_repository_names_the_key(stack_config):
    stack_config["kubernetes"]["imageRepository"] = "https://registry.example"
    error, _ = run_program_expecting_error(stack_config, {"sshPrivateKey": FAKE_PRIVATE_KEY})
    assert str(error).startswith("kubeha:kubernetes.imageRepository: must be a registry path"), str(error)


# --- real validators ---------------------------------------------------------------------------

@pytest.mark.parametrize("node", CONTROL_PLANES + WORKERS)
def test_nginx_accepts_every_nodes_config(stack_config, node):
    lb = load_balancing(in_mode(stack_config, "local-nginx"))
    host = next(h for h in lb.control_planes + parse_cluster_config(stack_config).workers if h.name == node)
    (nginx_conf,) = lb.files_for(host)
    nginx_check(nginx_conf.content)


def test_nginx_rejects_a_broken_config(stack_config):
    lb = load_balancing(in_mode(stack_config, "local-nginx"))
    (nginx_conf,) = lb.files_for(lb.control_planes[0])
    with pytest.raises(AssertionError, match="nginx -t failed"):
        nginx_check(nginx_conf.content.replace("proxy_pass kube_apiserver;", "proxy_pass nowhere;"))


def test_haproxy_accepts_the_local_proxy_config(stack_config):
    lb = load_balancing(in_mode(stack_config, "local-nginx", localProxy="haproxy"))
    (haproxy_cfg,) = lb.files_for(lb.control_planes[1])
    haproxy_check(haproxy_cfg.content)


@pytest.mark.parametrize("node", CONTROL_PLANES)
def test_haproxy_and_keepalived_accept_what_the_static_pods_mount(stack_config, node):
    lb = load_balancing(in_mode(stack_config, "static-pods"))
    files = {f.path: f.content for f in lb.files_for(next(h for h in lb.control_planes if h.name == node))}
    haproxy_check(files["/etc/haproxy/haproxy.cfg"])
    keepalived_check(files["/etc/keepalived/keepalived.conf"], files["/etc/keepalived/check_apiserver.sh"])
    shellcheck(files["/etc/keepalived/check_apiserver.sh"])


@pytest.mark.parametrize("version", ["1.28.15", "1.31.4", "1.34.2"])
@pytest.mark.parametrize("mode", ["static-pods", "kube-vip"])
def test_every_static_pod_manifest_validates_for_the_kubernetes_version(stack_config, mode, version):
    stack_config["kubernetes"]["version"] = version
    lb = load_balancing(in_mode(stack_config, mode))
    for host in lb.control_planes:
        for manifest in lb.static_pod_manifests(host).values():
            manifest_check(manifest, version)


def test_the_kube_vip_manifest_on_super_admin_conf_validates_too(stack_config):
    lb = load_balancing(in_mode(stack_config, "kube-vip"))
    manifest = lb.render_kube_vip_manifest(lb.control_planes[0])
    switched = re.sub(r"(?m)^( *)path: /etc/kubernetes/admin.conf$", r"\1path: /etc/kubernetes/super-admin.conf",
                      manifest)
    assert switched != manifest
    manifest_check(switched, "1.31.4")


def test_kubernetes_validate_rejects_a_broken_manifest(stack_config):
    lb = load_balancing(in_mode(stack_config, "kube-vip"))
    manifest = lb.render_kube_vip_manifest(lb.control_planes[0]).replace("hostNetwork: true", "hostNetwork: yes-please")
    with pytest.raises(AssertionError, match="kubernetes-validate failed"):
        manifest_check(manifest, "1.31.4")


def test_every_script_of_every_mode_passes_shellcheck(deploy, stack_config, mode):
    stack_config["packages"] = {"proxy": "http://10.250.0.1:3142"}
    failures = []
    for name, script in deploy(in_mode(stack_config, mode)).scripts().items():
        try:
            shellcheck(inner_script(script))
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("proxy, other", [("haproxy", "nginx"), ("nginx", "haproxy")])
def test_a_local_proxy_switch_stops_the_other_proxy_before_taking_the_port(deploy, stack_config, proxy, other):
    script = deploy(in_mode(stack_config, "local-nginx", localProxy=proxy)).named("w1-load-balancing").inputs["create"]
    assert script.index(f"systemctl disable --now {other}") < script.index(f"systemctl reload-or-restart {proxy}")
    assert f"grep -q 'rendered by kubeha' /etc/{other}/" in script  # a proxy of the host's own is left alone
