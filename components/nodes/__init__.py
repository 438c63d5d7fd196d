"""The Kubernetes nodes: the cluster's first control plane (cluster_bootstrap: kubeadm init), the
control planes and workers that join (control_plane_node, worker_node, kubeadm_join) and their
ordered steps on a host (node_steps)."""
