"""The pod network (pod_network, through the cluster's one kubernetes.Provider) and kubeha's
nftables firewall (firewall)."""
