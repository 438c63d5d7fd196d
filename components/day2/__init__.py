"""What changes a running cluster: upgrades, certificate renewal, the admin credential, etcd
backups and restore."""
