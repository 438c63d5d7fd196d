"""The resource graph under Pulumi mocks: components, targets, ordering, secrets, outputs."""
from __future__ import annotations

from itertools import pairwise

import pytest

from tests.conftest import FAKE_PRIVATE_KEY
from tests.harness import COMMAND, FAKE_CA_HASH, FAKE_KUBECONFIG, dynamic, unsecret


def _commands(deployment, suffix: str) -> list[str]:
    return sorted(r.name for r in deployment.of_type(COMMAND) if r.name.endswith(suffix))


def test_one_component_per_host_role(deployment):
    assert len(deployment.of_type("kubeha:index:LoadBalancerPair")) == 1
    assert len(deployment.of_type("kubeha:index:ClusterBootstrap")) == 1
    assert len(deployment.of_type("kubeha:index:ControlPlaneNode")) == 3
    assert len(deployment.of_type("kubeha:index:WorkerNode")) == 2


def _parent_type(registration) -> str:
    """The type of a registration's parent, from its URN (`...::a$b::name` -> `b`)."""
    return registration.parent.split("::")[2].split("$")[-1] if registration.parent else ""


def test_one_root_component_holds_every_resource(deployment):
    roots = [r for r in deployment.registrations if not r.parent or r.parent.split("::")[2] == "pulumi:pulumi:Stack"]
    assert [(r.type, r.name) for r in roots] == [("kubeha:index:Cluster", "kubeha")]


def test_the_roots_own_children_carry_an_alias_to_the_top_of_the_stack(deployment):
    children = [r for r in deployment.registrations if _parent_type(r) == "kubeha:index:Cluster"]
    assert children and all(r.alias_specs for r in children), [r.name for r in children if not r.alias_specs]


def test_only_commands_joins_certificates_and_backup_records_below_the_components(deployment):
    below = {r.type for r in deployment.registrations if _parent_type(r).startswith("kubeha:index:")
             and _parent_type(r) not in ("kubeha:index:Cluster", "kubeha:index:PodNetwork")}
    assert below == {COMMAND, dynamic("KubeadmJoin"), dynamic("ControlPlaneCertificates"), dynamic("EtcdBackupStatus"),
                     dynamic("EtcdBackupKey")}


def test_the_cluster_wide_resources_are_beside_the_components(deployment):
    beside = [r for r in deployment.registrations if not r.type.startswith("kubeha:index:")
              and _parent_type(r) == "kubeha:index:Cluster"]
    # (Registered in whatever order their inputs resolve.)
    assert {(r.type, r.name) for r in beside} == {(dynamic("SettingsGuard"), "cluster-settings"),
                                                  (dynamic("Preflight"), "cluster-preflight"),
                                                  (dynamic("HostKeys"), "cluster-host-keys"),
                                                  (COMMAND, "cluster-teardown"),
                                                  (COMMAND, "cluster-kube-proxy-settings"),
                                                  (dynamic("AdminCredential"), "cluster-admin-credential"),
                                                  (dynamic("KubernetesUpgrade"), "kubernetes-upgrade")}


def test_every_command_is_a_child_of_its_component(deployment):
    component_urns = {urn for urn, name in deployment.urns.items() if "kubeha:index:" in urn}
    for command in deployment.of_type(COMMAND):
        if command.name != "cluster-teardown":
            assert command.parent in component_urns, command.name


@pytest.mark.parametrize("name, address", [
    ("lb-lb1-install", "198.51.100.11"), ("lb-lb2-config", "198.51.100.12"),
    ("cp1-prepare", "198.51.100.21"), ("cluster-init", "198.51.100.21"), ("cp1-join", "198.51.100.21"),
    ("cp2-prepare", "198.51.100.22"), ("cp2-kubeadm-join", "198.51.100.22"), ("cp2-join", "198.51.100.22"),
    ("w2-prepare", "198.51.100.32"), ("w2-kubeadm-join", "198.51.100.32"), ("w2-join", "198.51.100.32"),
])
def test_commands_target_their_own_host(deployment, name, address):
    assert deployment.named(name).target_host == address


@pytest.mark.parametrize("name", ["cp2-membership", "w1-membership", "cluster-ca-cert-hash", "cluster-teardown"])
def test_cluster_side_steps_run_on_the_lead_control_plane(deployment, name):
    assert deployment.named(name).target_host == "198.51.100.21"


@pytest.mark.parametrize("joiner", ["cp2", "cp3", "w1"])
def test_join_material_is_made_on_the_lead_control_plane(deployment, joiner):
    assert deployment.named(f"{joiner}-kubeadm-join").cluster_side_host == "198.51.100.21"


def test_the_lead_control_planes_own_cluster_side_steps_run_on_the_next_one(deployment):
    assert deployment.named("cp1-membership").target_host == "198.51.100.22"
    assert deployment.named("cp1-kubeadm-join").cluster_side_host == "198.51.100.22"


def test_the_lead_is_the_name_that_sorts_first_not_the_first_entry(deploy, stack_config):
    stack_config["controlPlanes"].reverse()
    deployment = deploy(stack_config)
    assert deployment.named("cluster-init").target_host == "198.51.100.21"
    assert deployment.named("w1-membership").target_host == "198.51.100.21"


def test_reordering_the_control_planes_changes_no_resource(deploy, stack_config):
    before = deploy(stack_config)
    stack_config["controlPlanes"].reverse()
    after = deploy(stack_config)
    assert {r.name: (r.inputs, r.parent) for r in after.registrations} == {
        r.name: (r.inputs, r.parent) for r in before.registrations}


def test_init_runs_once_in_the_clusters_life(deployment):
    init = deployment.named("cluster-init")
    assert {"connection", "create"} <= set(init.ignore_changes)
    assert "delete" not in init.inputs or not init.inputs["delete"]


def test_without_the_lead_the_next_one_takes_its_steps_and_init_is_untouched(deploy, stack_config):
    stack_config["controlPlanes"] = stack_config["controlPlanes"][1:]
    deployment = deploy(stack_config)
    for name in ("w1-membership", "cp3-membership", "network-nodes-ready"):
        assert deployment.named(name).target_host == "198.51.100.22", name
    assert deployment.named("cp3-kubeadm-join").cluster_side_host == "198.51.100.22"
    assert deployment.named("cp2-membership").target_host == "198.51.100.23"
    assert "cp1-join" not in {r.name for r in deployment.registrations}


def test_the_kubeconfigs_server_is_set_by_the_program(deployment):
    assert "    server: https://198.51.100.100:8443\n" in deployment.exports["kubeconfig"]


def test_the_ca_hash_is_read_once_in_the_clusters_life(deployment):
    assert {"connection", "create"} <= set(deployment.named("cluster-ca-cert-hash").ignore_changes)


def test_the_nodes_member_step_is_made_once_wherever_its_control_plane_goes(deployment):
    assert {"create", "stdin"} <= set(deployment.named("w1-join").ignore_changes)


def test_stacks_from_before_keep_their_init_through_aliases(deployment):
    aliases = [str(alias) for alias in deployment.named("cluster-init").alias_specs]
    assert any("cp1-init" in alias and "ControlPlaneNode" in alias for alias in aliases), aliases


def test_load_balancer_rolls_out_backup_before_master(deployment):
    assert deployment.depends_on("lb-lb1-config", "lb-lb2-config")
    assert not deployment.depends_on("lb-lb2-config", "lb-lb1-config")


def test_load_balancer_pair_is_ready_before_kubeadm_init(deployment):
    assert deployment.depends_on("cluster-init", "lb-lb1-config")
    assert deployment.depends_on("cluster-init", "lb-lb2-config")
    assert deployment.depends_on("cluster-init", "cp1-prepare")


@pytest.mark.parametrize("joiner", ["cp1-kubeadm-join", "cp2-kubeadm-join", "cp3-kubeadm-join", "w1-kubeadm-join",
                                    "w2-kubeadm-join"])
def test_every_join_follows_init(deployment, joiner):
    assert deployment.depends_on(joiner, "cluster-init")


def test_control_plane_joins_are_chained(deployment):
    # cp2 makes the lead's join material, so it joins first; then cp1 (a no-op), then cp3.
    assert deployment.depends_on("cp1-kubeadm-join", "cp2-join")
    assert deployment.depends_on("cp3-kubeadm-join", "cp1-join")
    assert deployment.depends_on("cp3-kubeadm-join", "cp2-join")


def test_workers_join_in_parallel_once_the_lead_is_a_member(deployment):
    assert not deployment.depends_on("w2-join", "w1-join")
    assert not deployment.depends_on("w1-join", "w2-join")
    assert not deployment.depends_on("w1-join", "cp3-join")
    assert deployment.depends_on("w1-kubeadm-join", "cp1-join")


def test_the_join_follows_the_nodes_preparation_and_the_member_step_the_join(deployment):
    assert deployment.depends_on("cp2-kubeadm-join", "cp2-prepare")
    assert deployment.depends_on("cp2-join", "cp2-kubeadm-join")


@pytest.mark.parametrize("joiner", ["cp2", "w1"])
def test_the_join_mints_its_material_in_the_same_step_and_deletes_its_token_after(deployment, joiner):
    join = deployment.named(f"{joiner}-kubeadm-join").inputs
    assert 'kubeadm token create --ttl 30m --description "kubeha: join ' in join["mint"]
    assert 'delete secret "bootstrap-token-${token_id}"' in join["forget"]
    assert "/etc/kubernetes/kubelet.conf" in join["member_check"]


@pytest.mark.parametrize("gate", ["cluster-settings", "cluster-preflight"])
def test_the_join_waits_for_the_settings_guard_and_the_preflight(deployment, gate):
    assert deployment.depends_on("w1-kubeadm-join", gate)


def test_removal_drains_before_reset(deployment):
    # Pulumi deletes dependents first: membership (drain, delete node) before the join (reset).
    assert deployment.depends_on("w1-membership", "w1-join")
    assert 'node="w1"' in deployment.named("w1-membership").inputs["delete"]
    assert "kubectl drain \"${node}\"" in deployment.named("w1-membership").inputs["delete"]
    assert "kubeadm reset -f" in deployment.named("w1-join").inputs["delete"]


def test_the_drain_is_bounded_and_names_a_blocking_disruption_budget(deployment):
    delete = deployment.named("w1-membership").inputs["delete"]
    assert "--timeout=180s" in delete
    assert "drain blocked by a PodDisruptionBudget" in delete


def test_every_control_plane_is_reset_by_its_own_join_resource(deployment):
    for name in ("cp1", "cp2", "cp3"):
        assert "kubeadm reset -f" in deployment.named(f"{name}-join").inputs["delete"], name


def test_destroy_marks_the_cluster_before_any_node_leaves(deployment):
    teardown = deployment.named("cluster-teardown")
    assert "create configmap kubeha-teardown" in teardown.inputs["delete"]
    for name in ("cp1-membership", "cp2-membership", "w1-membership"):
        assert deployment.depends_on("cluster-teardown", name), name
        assert "kubeha-teardown" in deployment.named(name).inputs["delete"], name


def test_ssh_connection_is_secret(deployment):
    for command in deployment.of_type(COMMAND):
        assert command.input_is_secret("connection"), command.name
        assert "not-a-real-key" in unsecret(command.inputs["connection"])["privateKey"]


@pytest.mark.parametrize("joiner", ["cp2", "w1"])
def test_join_secrets_arrive_on_stdin_not_in_the_command(deployment, joiner):
    join = deployment.named(f"{joiner}-kubeadm-join").inputs["join"]
    assert 'token: "${KUBEADM_TOKEN}"' in join
    assert "read -r KUBEADM_TOKEN" in join


@pytest.mark.parametrize("joiner", ["cp2", "w1"])
def test_the_joins_ssh_key_is_secret_in_its_inputs_and_outputs(deployment, joiner):
    join = deployment.named(f"{joiner}-kubeadm-join")
    assert join.input_is_secret("private_key")
    assert "private_key" in join.secret_outputs


def test_no_script_contains_a_secret(deployment):
    for name, text in deployment.scripts().items():
        assert "not-a-real-key" not in text, name


def join_script(deployment, joiner: str) -> str:
    return deployment.named(f"{joiner}-kubeadm-join").inputs["join"]


def test_join_pins_the_ca_hash(deployment):
    assert f'- "{FAKE_CA_HASH}"' in join_script(deployment, "w1")
    assert "unsafeSkipCAVerification" not in join_script(deployment, "w1")


def test_control_plane_join_carries_certificate_key_and_advertise_address(deployment):
    join = join_script(deployment, "cp3")
    assert 'certificateKey: "${KUBEADM_CERTIFICATE_KEY}"' in join
    assert 'advertiseAddress: "198.51.100.23"' in join


def test_worker_join_has_no_control_plane_section(deployment):
    assert "kubeadm join" in join_script(deployment, "w1")
    assert "controlPlane:" not in join_script(deployment, "w1")


def test_init_uses_the_vip_as_endpoint_and_in_cert_sans(deployment):
    create = deployment.named("cluster-init").inputs["create"]
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
    assert exports["kubeconfig"] == FAKE_KUBECONFIG.replace("https://198.51.100.250:6443", "https://198.51.100.100:8443")
    assert exports["kubernetesVersion"] == "1.34.4"
    assert exports["controlPlanes"][0] == {"name": "cp1", "address": "198.51.100.21"}
    assert [w["name"] for w in exports["workers"]] == ["w1", "w2"]
    assert [lb["name"] for lb in exports["loadBalancers"]] == ["lb1", "lb2"]


def test_preview_registers_the_same_graph(deploy, stack_config):
    from tests.harness import run_program
    preview = run_program(stack_config, {"sshPrivateKey": FAKE_PRIVATE_KEY}, preview=True)
    assert sorted(r.name for r in preview.registrations) == sorted(
        r.name for r in deploy(stack_config).registrations)


def test_single_control_plane_without_workers(deploy, stack_config):
    stack_config["controlPlanes"] = stack_config["controlPlanes"][:1]
    stack_config["workers"] = []
    deployment = deploy(stack_config)
    assert _commands(deployment, "-join") == ["cp1-join"]  # finds itself initialised
    assert deployment.exports["workers"] == []


def test_package_proxy_reaches_host_scripts(deploy, stack_config):
    stack_config["packages"] = {"proxy": "http://10.250.0.1:3142"}
    deployment = deploy(stack_config)
    for name in ("lb-lb1-install", "cp1-prepare", "w1-prepare"):
        create = deployment.named(name).inputs["create"]
        assert "package_proxy=http://10.250.0.1:3142\n" in create, name
        assert 'Acquire::https::Proxy "%s";\\n\' "${package_proxy}" "${package_proxy}"' in create, name
        # Before any apt call, not only when a package is missing.
        assert create.index("90kubeha-proxy") < create.index("apt-get update"), name


def test_package_proxy_reaches_the_repository_key_download_and_containerd(deploy, stack_config):
    stack_config["packages"] = {"proxy": "http://10.250.0.1:3142"}
    deployment = deploy(stack_config)
    containerd = deployment.named("w1-containerd").inputs["create"]
    packages = deployment.named("w1-kubernetes-packages").inputs["create"]
    assert "package_proxy=http://10.250.0.1:3142\n" in packages and 'curl -fsSL --proxy "${package_proxy}" ' in packages
    assert "package_proxy=http://10.250.0.1:3142\n" in containerd
    assert '"Environment=HTTPS_PROXY=${package_proxy}"' in containerd
    assert '"Environment=NO_PROXY="localhost,127.0.0.1,10.244.0.0/16,10.96.0.0/12,.svc,.cluster.local' in containerd


def test_without_a_proxy_no_proxy_setting_is_left_behind(deployment):
    prepare = deployment.named("w1-prepare").inputs["create"]
    containerd = deployment.named("w1-containerd").inputs["create"]
    assert "rm -f /etc/apt/apt.conf.d/90kubeha-proxy" in prepare
    assert "rm -f /etc/systemd/system/containerd.service.d/90-kubeha-proxy.conf" in containerd
    assert "--proxy" not in prepare and "package_proxy" not in containerd


def test_hosts_of_another_distribution_family_are_refused_at_the_first_step(deployment):
    prepare = deployment.named("w1-prepare").inputs["create"]
    assert "kubeha supports Debian and Ubuntu hosts" in prepare


@pytest.mark.parametrize("mode", ["keepalived-haproxy", "local-nginx"])
def test_no_script_has_a_path_for_another_distribution_family(deploy, stack_config, mode):
    if mode == "local-nginx":
        stack_config["loadBalancer"] = {"mode": "local-nginx"}
    for command in deploy(stack_config).of_type(COMMAND):
        text = command.inputs["create"] + (command.inputs.get("delete") or "")
        for word in ("dnf", "yum", "rpm -q", "package_manager", " nginx-mod-stream"):
            assert word not in text, (command.name, word)


def test_control_plane_removal_also_removes_its_etcd_member(deployment):
    delete = deployment.named("cp2-membership").inputs["delete"]
    assert "member remove" in delete and 'node="cp2"' in delete
    assert "member remove" not in deployment.named("w1-membership").inputs["delete"]


def test_control_plane_removal_checks_that_etcd_keeps_its_quorum_first(deployment):
    delete = deployment.named("cp2-membership").inputs["delete"]
    assert (delete.index("endpoint health") < delete.index("kubectl drain \"${node}\"")
            < delete.index("member remove \"${member_id}\""))
    assert "etcd would lose its quorum" in delete


def test_any_control_plane_can_make_control_plane_join_material(deployment):
    create = deployment.named("cp1-kubeadm-join").inputs["mint"]
    assert "/etc/kubernetes/kubeha/kubeadm-init.yaml" not in create  # only the initialising node has it
    assert '"  advertiseAddress: \\"198.51.100.22\\""' in create


def test_containerd_gets_the_default_cgroup_driver_and_kubeadms_sandbox_image(deployment):
    prepare = deployment.named("w1-containerd").inputs["create"]
    assert "s/SystemdCgroup = .*/SystemdCgroup = true/" in prepare
    assert 's#sandbox_image = .*#sandbox_image = "registry.k8s.io/pause:3.10.1"#' in prepare
    assert "s/restrict_oom_score_adj = .*/restrict_oom_score_adj = false/" in prepare


def test_containerd_settings_and_the_image_mirror_reach_every_node(deploy, stack_config):
    stack_config["containerd"] = {"cgroupDriver": "cgroupfs", "restrictOomScoreAdj": True}
    stack_config["kubernetes"]["imageRepository"] = "mirror.example:5000/k8s"
    deployment = deploy(stack_config)
    for name in ("cp1-containerd", "cp2-containerd", "w1-containerd"):
        prepare = deployment.named(name).inputs["create"]
        assert "s/SystemdCgroup = .*/SystemdCgroup = false/" in prepare, name
        assert "s/restrict_oom_score_adj = .*/restrict_oom_score_adj = true/" in prepare, name
        assert 'sandbox_image = "mirror.example:5000/k8s/pause:3.10.1"' in prepare, name
    assert "cgroupDriver: cgroupfs\n" in deployment.named("cluster-init").inputs["create"]


def test_ipv4_hosts_get_no_ipv6_forwarding(deployment):
    assert "net.ipv6.conf.all.forwarding" not in deployment.named("w1-prepare").inputs["create"]


def test_ipv6_addresses_turn_on_ipv6_forwarding(deploy, ipv6_stack_config):
    assert "net.ipv6.conf.all.forwarding        = 1" in deploy(ipv6_stack_config).named("w1-prepare").inputs["create"]


def test_ipv4_addresses_leave_ipv6_forwarding_alone(deployment):
    assert "net.ipv6.conf.all.forwarding" not in deployment.named("w1-prepare").inputs["create"]


ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0b3ZmYWtla2V5Zm9ydGVzdHNvbmx5MDEyMzQ1Njc4 root@cp2"


def test_a_pinned_host_key_reaches_every_connection_to_that_host_only(deploy, stack_config):
    stack_config["ssh"]["hostKeys"] = {"cp2": ED25519_KEY}
    for command in deploy(stack_config).of_type(COMMAND):
        connection = unsecret(command.inputs["connection"])
        assert connection.get("hostKey") == (ED25519_KEY if connection["host"] == "198.51.100.22" else None), command.name


def test_a_pinned_host_key_reaches_the_joins_own_sessions(deploy, stack_config):
    stack_config["ssh"]["hostKeys"] = {"cp1": ED25519_KEY}
    join = deploy(stack_config).named("w1-kubeadm-join").inputs
    assert join["cluster_side"]["host_key"] == ED25519_KEY and join["node"].get("host_key") is None


def test_a_root_login_runs_scripts_as_it_is(deployment):
    assert deployment.named("w1-prepare").inputs["create"].startswith('bash -c "$(cat <<')


def test_a_non_root_login_runs_every_script_through_passwordless_sudo(deploy, stack_config):
    stack_config["ssh"]["user"] = "kubeha"
    for command in deploy(stack_config).of_type(COMMAND):
        for key in ("create", "delete"):
            text = command.inputs.get(key)
            assert not text or text.startswith('sudo -n -- bash -c "$(cat <<'), (command.name, key)


def test_the_joins_steps_run_through_sudo_too(deploy, stack_config):
    stack_config["ssh"]["user"] = "kubeha"
    scripts = deploy(stack_config).scripts()
    for step in ("member_check", "mint", "join", "forget"):
        assert scripts[f"w1-kubeadm-join:{step}"].startswith('sudo -n -- bash -c "$(cat <<'), step


@pytest.mark.parametrize("record, cluster_side_join", [("cp2-membership", "cp1-join"), ("cp1-membership", "cp2-join"),
                                                       ("w1-membership", "cp1-join")])
def test_a_record_is_deleted_before_the_control_plane_it_runs_on_is_reset(deployment, record, cluster_side_join):
    # On destroy every node is reset; a record's delete must still find its control plane a member.
    assert deployment.depends_on(record, cluster_side_join)


def test_the_drain_timeout_is_a_setting(deploy, stack_config):
    stack_config["kubernetes"]["drainTimeoutSeconds"] = 20
    assert "--timeout=20s" in deploy(stack_config).named("w1-membership").inputs["delete"]


def test_each_control_plane_mint_writes_its_own_upload_config(deployment):
    # A worker's mint on the same control plane may run at the same time; a shared file would be
    # removed under the control plane's upload-certs.
    mint = deployment.named("cp2-kubeadm-join").inputs["mint"]
    assert 'upload_config="$(mktemp /etc/kubernetes/kubeha/upload-certs.XXXXXX.yaml)"' in mint


def test_containerds_settings_roll_one_node_at_a_time_control_planes_first(deployment):
    order = ["cp1", "cp2", "cp3", "w1", "w2"]
    for before, after in pairwise(order):
        assert deployment.depends_on(f"{after}-containerd", f"{before}-containerd"), (before, after)


def test_kubeadm_runs_on_a_node_only_once_containerd_is_configured(deployment):
    assert deployment.depends_on("cluster-init", "cp1-containerd")
    assert deployment.depends_on("w1-kubeadm-join", "w1-containerd")


def test_a_containerd_restart_waits_for_the_runtime_and_the_kubelet_before_the_next_node(deployment):
    script = deployment.named("w1-containerd").inputs["create"]
    assert script.index("systemctl restart containerd") < script.index("http://127.0.0.1:10248/healthz")
    assert 'marker=/etc/containerd/.kubeha-restart-pending' in script  # an interrupted restart is made up


def test_a_nodes_member_step_follows_a_new_login_without_joining_again(deployment):
    command = deployment.named("w1-join")
    assert "create" in command.ignore_changes and "connection" not in command.ignore_changes
    assert "reached over the new connection" in command.inputs["update"]  # so its reset uses the new login
