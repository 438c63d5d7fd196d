"""The API endpoint's load balancers: the keepalived and haproxy pair on hosts of their own
(load_balancer_pair), the ones on the control planes (node_load_balancer: static pods, kube-vip,
the local proxy) and the files both render (lb_files)."""
