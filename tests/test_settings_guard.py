"""The settings guard: fixed settings are refused when they differ from what the cluster was built
with, at check time (preview), naming the key and both values; everything waits for it."""
from __future__ import annotations

import copy

import pytest

from components.config.model import ClusterConfig
from components.gates.settings_guard import SETTINGS, _GuardProvider, fixed_settings

COMMAND = "command:remote:Command"


@pytest.fixture
def built(stack_config) -> dict[str, str]:
    return fixed_settings(ClusterConfig.model_validate(stack_config))


def settings_after(stack_config, edit) -> dict[str, str]:
    edited = copy.deepcopy(stack_config)
    edit(edited)
    return fixed_settings(ClusterConfig.model_validate(edited))


def check(built: dict[str, str], wanted: dict[str, str]) -> list[str]:
    result = _GuardProvider("kubeha").check({SETTINGS: built}, {SETTINGS: wanted})
    return [failure.reason for failure in result.failures or []]


def test_the_same_settings_pass(built):
    assert check(built, dict(built)) == []


def test_a_first_deployment_has_nothing_to_compare_with(built):
    assert _GuardProvider("kubeha").check({}, {SETTINGS: built}).failures in (None, [])


@pytest.mark.parametrize("key, edit, old, new", [
    ("loadBalancer.vip", lambda c: c["loadBalancer"].update(vip="198.51.100.101"), "198.51.100.100",
     "198.51.100.101"),
    ("loadBalancer.port", lambda c: c["loadBalancer"].update(port=9443), "8443", "9443"),
    ("kubernetes.podSubnet", lambda c: c["kubernetes"].update(podSubnet="10.200.0.0/16"), "10.244.0.0/16",
     "10.200.0.0/16"),
    ("kubernetes.serviceSubnet", lambda c: c["kubernetes"].update(serviceSubnet="10.112.0.0/12"),
     "10.96.0.0/12", "10.112.0.0/12"),
    ("kubernetes.clusterName", lambda c: c["kubernetes"].update(clusterName="prod"), "kubernetes", "prod"),
    ("containerd.cgroupDriver", lambda c: c.update(containerd={"cgroupDriver": "cgroupfs"}), "systemd",
     "cgroupfs"),
    ("kubernetes.kubelet.cpuManagerPolicy", lambda c: c["kubernetes"].update(kubelet={"cpuManagerPolicy": "static"}),
     "(unset)", "static"),
    ("kubernetes.kubelet.reservedMemory",
     lambda c: c["kubernetes"].update(kubelet={"reservedMemory": [{"numaNode": 0, "limits": {"memory": "1Gi"}}]}),
     "(unset)", '[{"limits": {"memory": "1Gi"}, "numaNode": 0}]'),
    ("kubernetes.kubeProxy.mode", lambda c: c["kubernetes"].update(kubeProxy={"mode": "ipvs"}), "(unset)", "ipvs"),
    ("loadBalancer.virtualRouterId", lambda c: c["loadBalancer"].update(virtualRouterId=52), "51", "52"),
    ("network.flannel.mtu", lambda c: c.update(network={"flannel": {"mtu": 1400}}), "(unset)", "1400"),
])
def test_a_fixed_setting_change_is_refused_naming_key_and_values(stack_config, built, key, edit, old, new):
    [message] = check(built, settings_after(stack_config, edit))
    assert message.startswith(f"kubeha:{key}: this cluster was built with {old}; changing it to {new} ")
    assert message.endswith("Refused; nothing was changed.")


def test_a_mode_change_names_the_mode(stack_config, built):
    def to_static_pods(config):
        config["loadBalancer"] = {"mode": "static-pods", "vip": "198.51.100.100", "port": 8443,
                                  "interface": "eth0", "virtualRouterId": 51}
    [message] = check(built, settings_after(stack_config, to_static_pods))
    assert message.startswith("kubeha:loadBalancer.mode: this cluster was built with keepalived-haproxy; "
                              "changing it to static-pods would move the control-plane endpoint")


def test_settings_that_may_change_pass(stack_config, built):
    def day_two(config):
        config["workers"] = config["workers"][:1]
        config["controlPlanes"] = [config["controlPlanes"][0], *reversed(config["controlPlanes"][1:])]
        config["packages"] = {"proxy": "http://198.51.100.9:3142"}
    assert check(built, settings_after(stack_config, day_two)) == []


def test_a_setting_the_guard_never_recorded_is_recorded_not_refused(built):
    older = {key: value for key, value in built.items() if key != "kubernetes.kubeProxy.mode"}
    assert check(older, built) == []


def test_kubelet_and_kube_proxy_settings_may_change_on_a_built_cluster(stack_config, built):
    """They roll out node by node (kubelet-settings.sh.j2, kube-proxy-settings.sh.j2)."""
    def tuned(config):
        config["kubernetes"].update(kubelet={"maxPods": 50, "serializeImagePulls": False},
                                    kubeProxy={"conntrack": {"maxPerCore": 0}})
    assert check(built, settings_after(stack_config, tuned)) == []


def test_control_plane_settings_may_change_on_a_built_cluster(stack_config, built):
    """They roll out one control plane at a time (reconfigure-control-plane.sh.j2)."""
    def hardened(config):
        config["kubernetes"].update(apiServer={"extraArgs": {"profiling": "false"}},
                                    controllerManager={"extraArgs": {"profiling": "false"}},
                                    scheduler={"extraArgs": {"v": "2"}}, audit={"policy": "metadata"})
    assert check(built, settings_after(stack_config, hardened)) == []


def test_a_setting_the_guard_never_recorded_previews_no_change(built):
    older = {key: value for key, value in built.items() if key != "loadBalancer.virtualRouterId"}
    assert not _GuardProvider("kubeha").diff("settings", {SETTINGS: older}, {SETTINGS: built}).changes


def test_replacing_every_load_balancer_host_at_once_is_refused(stack_config, built):
    def new_pair(config):
        config["loadBalancer"]["hosts"] = [{"name": "lb3", "address": "198.51.100.13"},
                                           {"name": "lb4", "address": "198.51.100.14"}]
    [message] = check(built, settings_after(stack_config, new_pair))
    assert message.startswith("kubeha:loadBalancer.hosts: this change replaces every LB host at once (lb1, lb2 by "
                              "lb3, lb4)")


def test_replacing_one_load_balancer_host_passes(stack_config, built):
    def one_new(config):
        config["loadBalancer"]["hosts"][1] = {"name": "lb3", "address": "198.51.100.13"}
    assert check(built, settings_after(stack_config, one_new)) == []


def test_an_unchanged_guard_previews_no_change(built):
    assert not _GuardProvider("kubeha").diff("settings", {SETTINGS: built}, {SETTINGS: dict(built)}).changes


def test_every_remote_command_waits_for_the_guard(deployment):
    commands = deployment.of_type(COMMAND)
    assert commands
    assert [command.name for command in commands if not deployment.depends_on(command.name, "cluster-settings")] == []


def test_reordering_the_control_planes_is_no_edit_to_refuse(stack_config, built):
    def reorder(config):
        config["controlPlanes"].reverse()
    assert check(built, settings_after(stack_config, reorder)) == []


def test_removing_the_control_plane_that_initialised_the_cluster_is_an_ordinary_removal(stack_config, built):
    def remove_first(config):
        del config["controlPlanes"][0]
    assert check(built, settings_after(stack_config, remove_first)) == []


def test_decommissioning_counts_as_a_removal(stack_config, built):
    def decommission_two(config):
        for host in config["controlPlanes"][:2]:
            host["decommission"] = "unreachable"
    [message] = check(built, settings_after(stack_config, decommission_two))
    assert message.startswith("kubeha:controlPlanes: this change removes 2 control planes at once (cp1, cp2)")


def test_removing_two_control_planes_at_once_is_refused(stack_config, built):
    def remove_two(config):
        config["controlPlanes"] = config["controlPlanes"][:1]
    [message] = check(built, settings_after(stack_config, remove_two))
    assert message.startswith("kubeha:controlPlanes: this change removes 2 control planes at once (cp2, cp3)")


def test_removing_one_control_plane_and_adding_others_passes(stack_config, built):
    def replace_one(config):
        config["controlPlanes"] = [*config["controlPlanes"][:2],
                                   {"name": "cp4", "address": "198.51.100.24"},
                                   {"name": "cp5", "address": "198.51.100.25"}]
    assert check(built, settings_after(stack_config, replace_one)) == []


def with_version(stack_config, version: str) -> dict[str, str]:
    return settings_after(stack_config, lambda c: c["kubernetes"].update(version=version))


@pytest.mark.parametrize("old, new", [("1.34.3", "1.34.4"), ("1.33.7", "1.34.4")])
def test_an_upgrade_to_the_next_patch_or_minor_release_passes(stack_config, old, new):
    assert check(with_version(stack_config, old), with_version(stack_config, new)) == []


def test_a_downgrade_is_refused_naming_both_releases(stack_config):
    [message] = check(with_version(stack_config, "1.34.4"), with_version(stack_config, "1.34.3"))
    assert message.startswith("kubeha:kubernetes.version: this cluster runs 1.34.4 (or an upgrade to it has "
                              "begun); 1.34.3 would be a downgrade")


def test_skipping_a_minor_release_is_refused_naming_the_one_to_take_first(stack_config):
    [message] = check(with_version(stack_config, "1.32.9"), with_version(stack_config, "1.34.4"))
    assert "skips a minor release" in message and "Upgrade to 1.33.x first" in message


def test_an_upgrade_in_the_same_run_as_a_new_worker_is_refused(stack_config):
    built = with_version(stack_config, "1.34.3")

    def upgrade_and_add(config):
        config["kubernetes"].update(version="1.34.4")
        config["workers"].append({"name": "w3", "address": "198.51.100.33"})
    [message] = check(built, settings_after(stack_config, upgrade_and_add))
    assert message.startswith("kubeha:kubernetes.version: the upgrade from 1.34.3 to 1.34.4 comes with a change "
                              "of workers (w3)")


@pytest.mark.parametrize("group, index", [("workers", 0), ("controlPlanes", 1), ("loadBalancer", None)])
def test_a_hosts_address_changed_in_place_is_refused(stack_config, built, group, index):
    def move(config):
        entries = config["loadBalancer"]["hosts"] if index is None else config[group]
        entries[index or 0]["address"] = "198.51.100.99"
    [message] = check(built, settings_after(stack_config, move))
    assert "was built at" in message and "at 198.51.100.99 in place" in message
    assert message.startswith(f"kubeha:{'loadBalancer.hosts' if index is None else group}: ")


def test_a_host_renamed_at_its_address_is_refused(stack_config, built):
    [message] = check(built, settings_after(stack_config, lambda c: c["workers"][0].update(name="w9")))
    assert message.startswith("kubeha:workers: w9 is new at 198.51.100.31, the address of w1, which this run removes")


def test_a_host_moved_to_another_group_is_refused(stack_config, built):
    [message] = check(built, settings_after(stack_config, lambda c: c["controlPlanes"].append(c["workers"].pop(0))))
    assert message.startswith("kubeha:controlPlanes: w1 is in workers in the built cluster")


def test_a_host_removed_then_added_back_at_its_address_passes(stack_config):
    without_w1 = settings_after(stack_config, lambda c: c["workers"].pop(0))
    assert check(without_w1, fixed_settings(ClusterConfig.model_validate(stack_config))) == []


def test_a_host_marked_unreachable_keeps_its_entry_and_passes(stack_config, built):
    marked = settings_after(stack_config, lambda c: c["workers"][0].update(decommission="unreachable"))
    assert check(built, marked) == []


def test_a_guard_that_never_recorded_the_hosts_records_them(stack_config, built):
    older = {key: value for key, value in built.items() if key != "hosts"}
    assert check(older, settings_after(stack_config, lambda c: c["workers"][0].update(address="198.51.100.99"))) == []


def test_the_site_balancers_endpoint_is_fixed(stack_config):
    stack_config["loadBalancer"] = {"mode": "external", "endpoint": "api.example.org:6443"}
    built = fixed_settings(ClusterConfig.model_validate(stack_config))
    [message] = check(built, settings_after(stack_config, lambda c: c["loadBalancer"].update(
        endpoint="api2.example.org:6443")))
    assert message.startswith("kubeha:loadBalancer.endpoint: this cluster was built with api.example.org:6443")


def test_the_removal_of_a_decommissioned_entry_changes_no_record(stack_config):
    marked = settings_after(stack_config, lambda c: c["workers"][0].update(decommission="unreachable"))
    assert settings_after(stack_config, lambda c: c["workers"].pop(0)) == marked


def test_a_new_host_at_a_decommissioned_hosts_address_passes(stack_config):
    marked = settings_after(stack_config, lambda c: c["workers"][0].update(decommission="unreachable"))
    replaced = settings_after(stack_config, lambda c: c["workers"].__setitem__(
        0, {"name": "w9", "address": c["workers"][0]["address"]}))
    assert check(marked, replaced) == []
