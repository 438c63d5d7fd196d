"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
import pulumi

from components.cluster import build_cluster
from components.config import load_cluster_config, load_ssh_private_key
from components.remote import SshAccess
from components.settings_guard import SettingsGuard

config = pulumi.Config()
cluster_config = load_cluster_config(config)
# First, and every host step waits for it: an edit the built cluster cannot take stops the run here.
guard = SettingsGuard("cluster-settings", cluster_config, config.name)
build_cluster(cluster_config, SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh),
                                        gate=guard))
