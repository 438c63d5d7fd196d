"""What runs before any host is changed, and knows no roles: the settings guard (edits refused
at preview) and preflight (every host's problems in one table). Imports nothing above ssh and config."""
