"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
import pulumi

from components.cluster import build_cluster
from components.config import load_cluster_config, load_ssh_private_key
from components.mode_guard import deployed_mode_check
from components.remote import SshAccess

config = pulumi.Config()
cluster_config = load_cluster_config(config)
ssh = SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh),
                gate=deployed_mode_check(cluster_config.load_balancer.mode, config.name))
build_cluster(cluster_config, ssh)
