"""kubeha: a highly available kubeadm cluster on your own hosts, over SSH."""
import pulumi

from components.cluster import Cluster, ClusterArgs
from components.config.loading import load_cluster_config, load_ssh_private_key
from components.ssh.remote import SshAccess

config = pulumi.Config()
cluster_config = load_cluster_config(config)
ssh = SshAccess(cluster_config.ssh, load_ssh_private_key(config, cluster_config.ssh))
cluster = Cluster("kubeha", ClusterArgs(config=cluster_config, ssh=ssh, project=config.name))
for name, value in cluster.outputs.items():
    pulumi.export(name, value)
