"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
from dataclasses import replace

import pulumi

from components.cluster import build_cluster
from components.config import load_cluster_config, load_ssh_private_key
from components.preflight import Preflight, warn_unpinned
from components.remote import SshAccess
from components.settings_guard import SettingsGuard
from components.upgrade import release_check

config = pulumi.Config()
cluster_config = load_cluster_config(config)
ssh = SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh))
# First, an edit the built cluster cannot take stops the run; then new hosts are checked; every
# host step waits for both.
guard = SettingsGuard("cluster-settings", cluster_config, config.name, release_check=release_check(cluster_config, ssh),
                      private_key=ssh.private_key)
preflight = Preflight("cluster-preflight", cluster_config, ssh, opts=pulumi.ResourceOptions(depends_on=[guard]))
preflight.unpinned_host_keys.apply(lambda offered: warn_unpinned(offered, cluster_config.ssh.host_keys))
build_cluster(cluster_config, replace(ssh, gates=(preflight,)))
