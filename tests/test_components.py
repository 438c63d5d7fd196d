"""The resource graph under Pulumi mocks: components, targets, ordering, secrets, outputs."""
from __future__ import annotations

import pytest

from tests.harness import FAKE_CA_HASH, FAKE_KUBECONFIG, is_secret, unsecret

COMMAND = "command:remote:Command"


def _commands(deployment, suffix: str) -> list[str]:
    return sorted(r.name for r in deployment.of_type(COMMAND) if r.name.endswith(suffix))


def test_one_component_per_host_role(deployment):
    assert len(deployment.of_type("kubeha:index:LoadBalancerPair")) == 1
    assert len(deployment.of_type("kubeha:index:ControlPlaneNode")) == 3
    assert len(deployment.of_type("kubeha:index:WorkerNode")) == 2


def test_only_commands_below_the_node_components(deployment):
    below = {r.type for r in deployment.registrations if r.parent and "kubeha:index:" in r.parent
             and "kubeha:index:PodNetwork" not in r.parent}
    assert below == {COMMAND}


def test_the_settings_guard_is_the_one_resource_beside_the_components(deployment):
    top_level = [r for r in deployment.registrations if not r.type.startswith("kubeha:index:")
                 and not (r.parent and "kubeha:index:" in r.parent)]
    assert [(r.type, r.name) for r in top_level] == [("pulumi-python:dynamic:Resource", "cluster-settings")]


def test_every_command_is_a_child_of_its_component(deployment):
    component_urns = {urn for urn, name in deployment.urns.items() if "kubeha:index:" in urn}
    for command in deployment.of_type(COMMAND):
        assert command.parent in component_urns, command.name


@pytest.mark.parametrize("name, address", [
    ("lb-lb1-install", "198.51.100.11"), ("lb-lb2-config", "198.51.100.12"),
    ("cp1-prepare", "198.51.100.21"), ("cp1-init", "198.51.100.21"),
    ("cp2-prepare", "198.51.100.22"), ("cp2-join", "198.51.100.22"),
    ("w2-prepare", "198.51.100.32"), ("w2-join", "198.51.100.32"),
])
def test_commands_target_their_own_host(deployment, name, address):
    assert deployment.named(name).target_host == address


@pytest.mark.parametrize("name", ["cp2-join-material", "cp3-join-material", "w1-join-material",
                                  "cp2-membership", "w1-membership", "cp1-ca-cert-hash", "cp1-kubeconfig"])
def test_cluster_side_steps_run_on_the_first_control_plane(deployment, name):
    assert deployment.named(name).target_host == "198.51.100.21"


def test_load_balancer_rolls_out_backup_before_master(deployment):
    assert deployment.depends_on("lb-lb1-config", "lb-lb2-config")
    assert not deployment.depends_on("lb-lb2-config", "lb-lb1-config")


def test_load_balancer_pair_is_ready_before_kubeadm_init(deployment):
    assert deployment.depends_on("cp1-init", "lb-lb1-config")
    assert deployment.depends_on("cp1-init", "lb-lb2-config")
    assert deployment.depends_on("cp1-init", "cp1-prepare")


@pytest.mark.parametrize("joiner", ["cp2-join", "cp3-join", "w1-join", "w2-join"])
def test_every_join_follows_init(deployment, joiner):
    assert deployment.depends_on(joiner, "cp1-init")


def test_control_plane_joins_are_chained(deployment):
    assert deployment.depends_on("cp3-join-material", "cp2-join")
    assert deployment.depends_on("cp3-join", "cp2-join")


def test_workers_join_in_parallel(deployment):
    assert not deployment.depends_on("w2-join", "w1-join")
    assert not deployment.depends_on("w1-join", "w2-join")
    assert not deployment.depends_on("w1-join", "cp2-join")


def test_join_material_is_created_just_before_its_join(deployment):
    assert deployment.depends_on("cp2-join", "cp2-join-material")
    assert deployment.depends_on("cp2-join-material", "cp2-prepare")


def test_removal_drains_before_reset(deployment):
    # Pulumi deletes dependents first: membership (drain, delete node) before the join (reset).
    assert deployment.depends_on("w1-membership", "w1-join")
    assert "kubectl drain \"w1\"" in deployment.named("w1-membership").inputs["delete"]
    assert "kubeadm reset -f" in deployment.named("w1-join").inputs["delete"]


def test_init_node_reset_on_destroy(deployment):
    assert "kubeadm reset -f" in deployment.named("cp1-init").inputs["delete"]


def test_ssh_connection_is_secret(deployment):
    for command in deployment.of_type(COMMAND):
        assert command.input_is_secret("connection"), command.name
        assert "not-a-real-key" in unsecret(command.inputs["connection"])["privateKey"]


@pytest.mark.parametrize("name", ["cp1-kubeconfig", "cp2-join-material", "w1-join-material"])
def test_commands_printing_secrets_mark_stdout_secret_and_do_not_log_it(deployment, name):
    command = deployment.named(name)
    assert "stdout" in command.secret_outputs
    assert command.inputs["logging"] == "stderr"


@pytest.mark.parametrize("name", ["cp2-join", "w1-join"])
def test_join_secrets_arrive_on_stdin_not_in_the_command(deployment, name):
    join = deployment.named(name)
    assert is_secret(join.inputs["stdin"])
    assert "abcdef.0123456789abcdef" not in join.inputs["create"]
    assert 'token: "${KUBEADM_TOKEN}"' in join.inputs["create"]


def test_no_command_text_contains_a_secret(deployment):
    for command in deployment.of_type(COMMAND):
        for key in ("create", "delete"):
            assert "not-a-real-key" not in (command.inputs.get(key) or ""), command.name


def test_join_pins_the_ca_hash(deployment):
    assert f'- "{FAKE_CA_HASH}"' in deployment.named("w1-join").inputs["create"]
    assert "unsafeSkipCAVerification" not in deployment.named("w1-join").inputs["create"]


def test_control_plane_join_carries_certificate_key_and_advertise_address(deployment):
    create = deployment.named("cp3-join").inputs["create"]
    assert 'certificateKey: "${KUBEADM_CERTIFICATE_KEY}"' in create
    assert 'advertiseAddress: "198.51.100.23"' in create


def test_worker_join_has_no_control_plane_section(deployment):
    assert "controlPlane:" not in deployment.named("w1-join").inputs["create"]


def test_init_uses_the_vip_as_endpoint_and_in_cert_sans(deployment):
    create = deployment.named("cp1-init").inputs["create"]
    assert 'controlPlaneEndpoint: "198.51.100.100:8443"' in create
    assert '  - "198.51.100.100"' in create
    assert "--upload-certs" in create


def test_haproxy_backends_follow_the_control_plane_list(deploy, stack_config):
    stack_config["controlPlanes"].append({"name": "cp4", "address": "198.51.100.24"})
    stack_config["controlPlanes"].append({"name": "cp5", "address": "198.51.100.25"})
    create = deploy(stack_config).named("lb-lb2-config").inputs["create"]
    for index in range(1, 6):
        assert f"server cp{index} 198.51.100.2{index}:6443" in create


def test_outputs(deployment):
    exports = deployment.exports
    assert exports["apiserverEndpoint"] == "https://198.51.100.100:8443"
    assert exports["vip"] == "198.51.100.100"
    assert exports["caCertHash"] == FAKE_CA_HASH
    assert exports["kubeconfig"] == FAKE_KUBECONFIG
    assert exports["kubernetesVersion"] == "1.34.4"
    assert exports["controlPlanes"][0] == {"name": "cp1", "address": "198.51.100.21"}
    assert [w["name"] for w in exports["workers"]] == ["w1", "w2"]
    assert [lb["name"] for lb in exports["loadBalancers"]] == ["lb1", "lb2"]


def test_only_the_kubeconfig_output_is_secret(deployment):
    assert deployment.secret_exports == {"kubeconfig"}


def test_preview_registers_the_same_graph(deploy, stack_config):
    from tests.harness import run_program
    preview = run_program(stack_config, {"sshPrivateKey": "key"}, preview=True)
    assert sorted(r.name for r in preview.registrations) == sorted(
        r.name for r in deploy(stack_config).registrations)


def test_single_control_plane_without_workers(deploy, stack_config):
    stack_config["controlPlanes"] = stack_config["controlPlanes"][:1]
    stack_config["workers"] = []
    deployment = deploy(stack_config)
    assert _commands(deployment, "-join") == []
    assert deployment.exports["workers"] == []


def test_package_proxy_reaches_host_scripts(deploy, stack_config):
    stack_config["packages"] = {"proxy": "http://10.250.0.1:3142"}
    deployment = deploy(stack_config)
    for name in ("lb-lb1-install", "cp1-prepare", "w1-prepare"):
        assert 'Acquire::http::Proxy "%s";\\n\' "http://10.250.0.1:3142"' in deployment.named(name).inputs["create"]


def test_control_plane_removal_also_removes_its_etcd_member(deployment):
    delete = deployment.named("cp2-membership").inputs["delete"]
    assert "member remove" in delete and '$3 == "cp2"' in delete
    assert "member remove" not in deployment.named("w1-membership").inputs["delete"]


def test_containerd_gets_the_default_cgroup_driver_and_kubeadms_sandbox_image(deployment):
    prepare = deployment.named("w1-prepare").inputs["create"]
    assert "s/SystemdCgroup = .*/SystemdCgroup = true/" in prepare
    assert 's#sandbox_image = .*#sandbox_image = "registry.k8s.io/pause:3.10.1"#' in prepare
    assert "s/restrict_oom_score_adj = .*/restrict_oom_score_adj = false/" in prepare


def test_containerd_settings_and_the_image_mirror_reach_every_node(deploy, stack_config):
    stack_config["containerd"] = {"cgroupDriver": "cgroupfs", "restrictOomScoreAdj": True}
    stack_config["kubernetes"]["imageRepository"] = "mirror.example:5000/k8s"
    deployment = deploy(stack_config)
    for name in ("cp1-prepare", "cp2-prepare", "w1-prepare"):
        prepare = deployment.named(name).inputs["create"]
        assert "s/SystemdCgroup = .*/SystemdCgroup = false/" in prepare, name
        assert "s/restrict_oom_score_adj = .*/restrict_oom_score_adj = true/" in prepare, name
        assert 'sandbox_image = "mirror.example:5000/k8s/pause:3.10.1"' in prepare, name
    assert "cgroupDriver: cgroupfs\n" in deployment.named("cp1-init").inputs["create"]
