"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
import pulumi

from components.cluster import build_cluster
from components.config import load_cluster_config, load_ssh_private_key
from components.remote import SshAccess

config = pulumi.Config()
cluster_config = load_cluster_config(config)
build_cluster(cluster_config, SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh)))
