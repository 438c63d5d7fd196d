"""kubeha components: LoadBalancerPair, ControlPlaneNode, WorkerNode and what they share."""
