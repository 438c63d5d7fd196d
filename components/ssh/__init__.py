"""One way to reach a host: the SSH access and command helper (remote), the paramiko session
(ssh_session) and the pinned host keys (host_keys)."""
