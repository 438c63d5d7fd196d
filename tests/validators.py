"""Real tools check what kubeha renders: haproxy -c, keepalived -t, nginx -t, nft -c, shellcheck, kubeadm config
validate, kubernetes-validate."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_WRAPPED = re.compile(r"""(?:sudo -n -- )?bash -c "\$\(cat <<'KUBEHA_SCRIPT_END'\n(?P<script>.*)\nKUBEHA_SCRIPT_END\n\)" \S+\n?\Z""",
                      re.DOTALL)


class ToolFailed(AssertionError):
    pass


def _tool(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        path = shutil.which(candidate)
        if path:
            return path
    raise ToolFailed(f"{name} is not installed; run .ci/run or `make setup` first")


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ToolFailed(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


# kubeadm as built for the lab (tests/lab/kubernetes/build.sh; `make setup` builds it).
KUBEADM = Path(os.environ.get("KUBE_DIR", "/var/cache/kubeha/kubernetes/v1.34.4")) / "bin" / "kubeadm"


def kubeadm_validate(config: str) -> None:
    """`kubeadm config validate`: strict decoding of every document (unknown fields fail) and
    kubeadm's own validation, by the real kubeadm."""
    if not KUBEADM.is_file():
        raise ToolFailed(f"{KUBEADM} is not built; run `make setup` first")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "kubeadm.yaml")
        path.write_text(config)
        _run([str(KUBEADM), "config", "validate", "--config", str(path)], "kubeadm config validate")


def inner_script(command_text: str) -> str:
    """The bash script inside a remote command built by components.ssh.remote.as_remote_command."""
    match = _WRAPPED.match(command_text)
    if not match:
        raise ToolFailed(f"not a kubeha remote command:\n{command_text[:200]}")
    return match.group("script") + "\n"


def heredoc(text: str, marker: str) -> str:
    """The body of the quoted here-document `marker` in a script (a file it writes)."""
    match = re.search(rf"<<'?{marker}'?\n(.*?)\n{marker}\n", text, re.DOTALL)
    if not match:
        raise ToolFailed(f"no here-document {marker} in the script")
    return match.group(1)


def shellcheck(script: str, shell: str = "bash") -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
    try:
        _run([_tool("shellcheck"), f"--shell={shell}", "--severity=style", handle.name], "shellcheck")
    finally:
        os.unlink(handle.name)


def haproxy_check(config: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "haproxy.cfg")
        path.write_text(config)
        _run([_tool("haproxy", "/usr/sbin/haproxy"), "-c", "-f", str(path)], "haproxy -c")


def keepalived_check(config: str, check_script: str) -> None:
    """keepalived -t on the config, with the check script at the path the config names.

    keepalived insists that the tracked script exists at its real path, so the test binds a
    private folder over /etc/keepalived in a throwaway mount namespace (needs root).
    """
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        Path(folder, "check_apiserver.sh").write_text(check_script)
        os.chmod(Path(folder, "check_apiserver.sh"), 0o755)
        config_path = Path(folder, "keepalived.conf")
        config_path.write_text(config)
        keepalived = _tool("keepalived", "/usr/sbin/keepalived")
        _run([_tool("unshare"), "--mount", "sh", "-c",
              f'mkdir -p /etc/keepalived && mount --bind "{folder}" /etc/keepalived && '
              f'"{keepalived}" -t -f "{config_path}"'], "keepalived -t")


def nft_check(ruleset: str) -> None:
    """nft -c: nftables parses and checks the ruleset without loading it (needs CAP_NET_ADMIN)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "kubeha.nft")
        path.write_text(ruleset)
        _run([_tool("nft", "/usr/sbin/nft"), "-c", "-f", str(path)], "nft -c")


def nginx_check(config: str) -> None:
    """nginx -t on the config (its absolute paths are the host's: modules, pid, error log)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "nginx.conf")
        path.write_text(config)
        _run([_tool("nginx", "/usr/sbin/nginx"), "-t", "-c", str(path)], "nginx -t")


def kubernetes_version_for_schemas(version: str) -> str:
    """The schema set kubernetes-validate has for a release: '1.31.4' -> '1.31.0'."""
    major, minor, _ = version.split(".")
    return f"{major}.{minor}.0"


def manifest_check(manifest: str, kubernetes_version: str) -> None:
    """kubernetes-validate, strict (unknown fields fail), against the release's own schemas."""
    import kubernetes_validate
    import yaml

    try:
        kubernetes_validate.validate(yaml.safe_load(manifest), kubernetes_version_for_schemas(kubernetes_version),
                                     strict=True)
    except kubernetes_validate.ValidationError as error:
        raise ToolFailed(f"kubernetes-validate failed: {error.message} at {'.'.join(map(str, error.path))}") from None
