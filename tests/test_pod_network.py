"""The pod network: flannel's manifest rendered from the stack's settings, applied through one
kubernetes Provider, and the wait for every node Ready that follows every join."""
from __future__ import annotations

import json

import pytest
import yaml

from components.config.model import ClusterConfig
from components.network.pod_network import render_flannel_manifest
from tests.harness import unsecret
from tests.validators import inner_script, manifest_check, shellcheck

COMMAND = "command:remote:Command"
PROVIDER = "pulumi:providers:kubernetes"


def flannel_objects(stack_config) -> list[dict]:
    config = ClusterConfig.model_validate(stack_config)
    return [doc for doc in yaml.safe_load_all(render_flannel_manifest(config.network, config.kubernetes)) if doc]


def daemon_set(stack_config) -> dict:
    return next(doc for doc in flannel_objects(stack_config) if doc["kind"] == "DaemonSet")


def net_conf(stack_config) -> dict:
    config_map = next(doc for doc in flannel_objects(stack_config) if doc["kind"] == "ConfigMap")
    return json.loads(config_map["data"]["net-conf.json"])


@pytest.mark.parametrize("version", ["1.28.15", "1.31.4", "1.34.4"])
def test_every_flannel_object_validates_for_the_kubernetes_version(stack_config, version):
    for manifest_object in flannel_objects(stack_config):
        manifest_check(yaml.safe_dump(manifest_object), version)


def test_the_pod_subnet_is_flannels_network(stack_config):
    stack_config["kubernetes"]["podSubnet"] = "10.200.0.0/16"
    assert net_conf(stack_config)["Network"] == "10.200.0.0/16"
    assert net_conf(stack_config)["Backend"] == {"Type": "vxlan"}


def test_an_ipv6_pod_subnet_is_flannels_ipv6_network(ipv6_stack_config):
    conf = net_conf(ipv6_stack_config)
    assert (conf["IPv6Network"], conf["EnableIPv6"], conf["EnableIPv4"]) == ("fd00:10:244::/56", True, False)


def test_a_set_mtu_reaches_the_vxlan_backend(stack_config):
    stack_config["network"] = {"flannel": {"mtu": 1400}}
    assert net_conf(stack_config)["Backend"] == {"Type": "vxlan", "MTU": 1400}


def test_the_interface_setting_becomes_flanneld_iface(stack_config):
    stack_config["network"] = {"flannel": {"interface": "ens4"}}
    args = daemon_set(stack_config)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--iface=ens4" in args


def test_without_an_interface_flannel_picks_its_own(stack_config):
    args = daemon_set(stack_config)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [arg for arg in args if arg.startswith("--iface")]


def test_flannels_health_port_is_not_the_load_balancers(stack_config):
    container = daemon_set(stack_config)["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] != 8081 and "--healthz-port=8081" not in container["args"]


def test_the_images_are_pinned_and_follow_a_mirror(stack_config):
    stack_config["network"] = {"imageRepository": "registry.example:5000/mirror"}
    spec = daemon_set(stack_config)["spec"]["template"]["spec"]
    images = {container["name"]: container["image"] for container in [*spec["initContainers"], *spec["containers"]]}
    assert images == {
        "install-cni-plugin": "registry.example:5000/mirror/flannel-io/flannel-cni-plugin:v1.9.1-flannel1",
        "install-cni": "registry.example:5000/mirror/flannel-io/flannel:v0.28.10",
        "kube-flannel": "registry.example:5000/mirror/flannel-io/flannel:v0.28.10"}


def test_every_object_is_applied_through_the_clusters_provider(deployment):
    [provider] = deployment.of_type(PROVIDER)
    objects = [r for r in deployment.registrations if r.type.startswith("kubernetes:")]
    assert sorted(r.type.split(":", 1)[1] for r in objects) == [
        "apps/v1:DaemonSet", "core/v1:ConfigMap", "core/v1:Namespace", "core/v1:ServiceAccount",
        "rbac.authorization.k8s.io/v1:ClusterRole", "rbac.authorization.k8s.io/v1:ClusterRoleBinding"]
    assert provider.input_is_secret("kubeconfig")


def test_the_objects_wait_for_the_initialised_cluster(deployment):
    for manifest_object in (r for r in deployment.registrations if r.type.startswith("kubernetes:")):
        assert deployment.depends_on(manifest_object.name, "cluster-init"), manifest_object.name


def test_the_wait_runs_on_the_lead_control_plane_after_every_join(deployment):
    wait = deployment.named("network-nodes-ready")
    assert wait.target_host == "198.51.100.21"
    joined = {"cp1-membership", "cp2-membership", "cp3-membership", "w1-membership", "w2-membership"}
    assert joined <= {deployment.urns.get(urn) for urn in wait.dependencies}


def test_the_wait_names_every_node_and_passes_shellcheck(deployment):
    script = inner_script(unsecret(deployment.named("network-nodes-ready").inputs["create"]))
    assert "nodes=(cp1 cp2 cp3 w1 w2)" in script
    shellcheck(script)


def test_plugin_none_deploys_no_network_and_no_wait(deploy, stack_config):
    stack_config["network"] = {"plugin": "none"}
    deployment = deploy(stack_config)
    assert not [r for r in deployment.registrations if r.type.startswith("kubernetes:") or r.type == PROVIDER]
    assert not [r for r in deployment.of_type(COMMAND) if r.name == "network-nodes-ready"]
    assert (deployment.exports["networkPlugin"], deployment.exports["networkVersion"]) == ("none", None)


def test_the_outputs_name_the_plugin_and_its_version(deployment):
    assert (deployment.exports["networkPlugin"], deployment.exports["networkVersion"]) == ("flannel", "v0.28.10")


def test_the_objects_wait_for_every_node_so_a_destroy_removes_them_first(deployment):
    joins = {urn for urn, name in deployment.urns.items()
             if name in ("cp2-membership", "cp3-membership", "w1-membership", "w2-membership")}
    for manifest_object in (r for r in deployment.registrations if r.type.startswith("kubernetes:")):
        assert joins <= set(manifest_object.dependencies), manifest_object.name


def test_every_object_takes_over_the_fields_of_an_earlier_interrupted_create(deployment):
    for manifest_object in (r for r in deployment.registrations if r.type.startswith("kubernetes:")):
        assert manifest_object.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true", manifest_object.name


def test_a_deleted_object_does_not_wait_for_its_pods(deployment):
    # (A DaemonSet's pod on a dead node never goes: a foreground deletion would hold a destroy.)
    for manifest_object in (r for r in deployment.registrations if r.type.startswith("kubernetes:")):
        annotations = manifest_object.inputs["metadata"]["annotations"]
        assert annotations["pulumi.com/deletionPropagationPolicy"] == "background", manifest_object.name
