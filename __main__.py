"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
import pulumi

from components.cluster import build_cluster
from components.config import load_cluster_config, load_ssh_private_key
from components.mode_guard import check_deployed_mode
from components.remote import SshAccess

config = pulumi.Config()
cluster_config = load_cluster_config(config)
check_deployed_mode(cluster_config.load_balancer.mode, config.name)
build_cluster(cluster_config, SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh)))
