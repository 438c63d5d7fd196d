"""network.plugin calico: its manifest rendered from the stack's settings and validated by
kubernetes-validate for each Kubernetes release kubeha supports (the lab does not run calico)."""
from __future__ import annotations

import pytest
import yaml

from components.config.model import ClusterConfig
from components.network.pod_network import render_calico_manifest
from tests.validators import manifest_check

PROVIDER = "pulumi:providers:kubernetes"


@pytest.fixture
def calico_config(stack_config):
    stack_config["network"] = {"plugin": "calico"}
    return stack_config


def calico_objects(stack_config) -> list[dict]:
    config = ClusterConfig.model_validate(stack_config)
    return [doc for doc in yaml.safe_load_all(render_calico_manifest(config.network, config.kubernetes)) if doc]


def node_env(stack_config) -> dict[str, object]:
    daemon_set = next(doc for doc in calico_objects(stack_config) if doc["kind"] == "DaemonSet")
    (container,) = daemon_set["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def config_map(stack_config) -> dict[str, str]:
    return next(doc for doc in calico_objects(stack_config) if doc["kind"] == "ConfigMap")["data"]


@pytest.mark.parametrize("version", ["1.28.15", "1.31.4", "1.34.4"])
def test_every_calico_object_validates_for_the_kubernetes_version(calico_config, version):
    calico_config["kubernetes"]["version"] = version
    for manifest_object in calico_objects(calico_config):
        manifest_check(yaml.safe_dump(manifest_object), version)


def test_every_calico_kind_in_the_rbac_rules_has_its_crd(calico_config):
    objects = calico_objects(calico_config)
    defined = {doc["spec"]["names"]["plural"] for doc in objects if doc["kind"] == "CustomResourceDefinition"}
    named = {resource for doc in objects if doc["kind"] == "ClusterRole" for rule in doc["rules"]
             if rule["apiGroups"] == ["crd.projectcalico.org"] for resource in rule["resources"]}
    assert named <= defined, named - defined


def test_the_pod_subnet_is_calicos_pool_with_vxlan_always(calico_config):
    calico_config["kubernetes"]["podSubnet"] = "10.200.0.0/16"
    env = node_env(calico_config)
    assert env["CALICO_IPV4POOL_CIDR"] == "10.200.0.0/16"
    assert (env["CALICO_IPV4POOL_VXLAN"], env["CALICO_IPV4POOL_IPIP"]) == ("Always", "Never")
    assert config_map(calico_config)["calico_backend"] == "vxlan"


def test_an_ipv6_pod_subnet_is_calicos_ipv6_pool(ipv6_stack_config):
    ipv6_stack_config["network"] = {"plugin": "calico"}
    env = node_env(ipv6_stack_config)
    assert env["CALICO_IPV6POOL_CIDR"] == "fd00:10:244::/56"
    assert (env["IP"], env["IP6"]) == ("none", "autodetect")


def test_the_interface_setting_picks_the_nodes_address(calico_config):
    calico_config["network"]["calico"] = {"interface": "host0"}
    assert node_env(calico_config)["IP_AUTODETECTION_METHOD"] == "interface=host0"


def test_a_set_mtu_reaches_the_cni_config_and_vxlan(calico_config):
    calico_config["network"]["calico"] = {"mtu": 1400}
    assert config_map(calico_config)["veth_mtu"] == "1400"


def test_without_an_mtu_calico_derives_it(calico_config):
    assert config_map(calico_config)["veth_mtu"] == "0"


def test_the_images_are_pinned_and_follow_a_mirror(calico_config):
    calico_config["network"]["imageRepository"] = "mirror.example:5000"
    images = {container["image"] for doc in calico_objects(calico_config) if doc["kind"] in ("DaemonSet", "Deployment")
              for container in [*doc["spec"]["template"]["spec"].get("initContainers", []),
                                *doc["spec"]["template"]["spec"]["containers"]]}
    assert images == {"mirror.example:5000/calico/node:v3.30.3", "mirror.example:5000/calico/cni:v3.30.3",
                      "mirror.example:5000/calico/kube-controllers:v3.30.3"}


def test_calico_is_applied_through_the_clusters_provider_and_named_in_the_outputs(deploy, calico_config):
    deployment = deploy(calico_config)
    objects = [r for r in deployment.registrations if r.type.startswith("kubernetes:")]
    assert any(r.name == "network-daemonset-calico-node" for r in objects)
    assert sum(r.type == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition" for r in objects) == 22
    assert (deployment.exports["networkPlugin"], deployment.exports["networkVersion"]) == ("calico", "v3.30.3")


def test_calico_settings_are_refused_with_an_unknown_key(calico_config):
    from components.config.loading import parse_cluster_config
    from components.config.model import ConfigError
    calico_config["network"]["calico"] = {"backend": "bgp"}
    with pytest.raises(ConfigError, match=r"^kubeha:network.calico.backend: is not a known key"):
        parse_cluster_config(calico_config)
