"""A separate program that uses a kubeha cluster: it reads the cluster stack's outputs through
a StackReference. The endpoint is plain text; the kubeconfig stays a secret all the way.

    pulumi config set clusterStack organization/kubeha/lab
    pulumi up
"""
import pulumi

config = pulumi.Config()
cluster = pulumi.StackReference(config.require("clusterStack"))

endpoint = cluster.get_output("apiserverEndpoint")
kubeconfig = cluster.get_output("kubeconfig")  # secret in the cluster stack, secret here

pulumi.export("apiserverEndpoint", endpoint)
pulumi.export("kubeconfig", kubeconfig)
pulumi.export("controlPlaneCount", cluster.get_output("controlPlanes").apply(len))
