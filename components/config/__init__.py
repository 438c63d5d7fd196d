"""The stack config: the validated model (model), how it is read from the stack (loading), the
grammars and port table every value is checked against (grammar), the versions and images kubeha
pins (catalogue) and the kubelet's and kube-proxy's configuration fields (component_config).
Knows no hosts and no Pulumi resources."""
