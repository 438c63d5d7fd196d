"""One remote command with a secret on stdin, through the same helper the product uses."""
import pulumi

from components.config.model import Host, SshSettings
from components.ssh.remote import SshAccess, run_script

config = pulumi.Config()
host = Host(name=config.require("hostName"), address=config.require("hostAddress"))
ssh = SshAccess(SshSettings(), config.require_secret("sshPrivateKey"))
marker = config.require("marker")
command = run_script(
    "smoke", host=host, ssh=ssh,
    create=f"set -euo pipefail\nread -r secret\necho \"{marker}\" > /root/kubeha-smoke\nprintf '%s' \"$secret\"",
    delete="set -euo pipefail\nrm -f /root/kubeha-smoke",
    stdin=pulumi.Output.secret("s3cr3t-value\n"), secret_stdout=True,
    opts=pulumi.ResourceOptions())
pulumi.export("echoed", command.stdout)
