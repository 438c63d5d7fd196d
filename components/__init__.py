"""kubeha's program: the config model (config, component_config), the root component Cluster
(cluster) and what it wires: the gates (settings_guard, preflight with preflight_checks), the load
balancers (load_balancer_pair, node_load_balancer, lb_files), the nodes (control_plane_node,
worker_node, cluster_bootstrap, node_steps, kubeadm_join), the network (pod_network, firewall) and
the day-2 steps (upgrade, certificates, admin_credential), over one SSH builder (remote,
ssh_session) and one renderer (render). docs/architecture.md has the layout."""
