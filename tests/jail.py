"""A jail for running a rendered host script for real, with every external command a stub.

bash runs in a chroot holding only itself and its libraries, with PATH empty: every external
command goes to `command_not_found_handle`, which records its arguments and answers from the
canned answers a test gives (by command line prefix), else with nothing. Builtins, expansions,
redirections into the jail's files and control flow are bash's own.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

# Every external command is this: its arguments go to fd 3, one record each (\x1f between
# arguments, \x1e after the record, newlines as \x1d) written at once (the commands of a pipeline
# run side by side); it prints the canned answer for its command line, if any, and exits with its
# status (0 unless the answer says otherwise), having done nothing.
Answer = str | tuple[str, int]  # what a command prints, or that and its exit status


def _stub(answers: dict[str, Answer]) -> str:
    cases = ""
    for prefix, answer in answers.items():
        output, status = (answer, 0) if isinstance(answer, str) else answer
        cases += f"        {shlex.quote(prefix)}*) printf '%s' {shlex.quote(output)}; return {status} ;;\n"
    return ("command_not_found_handle() {\n"
            # Newlines travel as \x1d: bash's printf writes up to each newline at once, which
            # would let another command's record in between.
            "    local record; printf -v record '%s\\x1f' \"$@\"; record=${record//$'\\n'/$'\\x1d'}\n"
            "    printf '%s\\x1e' \"${record}\" >&3\n"
            f"    case \"$*\" in\n{cases}    esac\n"
            "    return 0\n}\n")


# Folders the scripts write their files into (inside the jail).
FOLDERS = ["etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/keyrings", "etc/containerd/certs.d",
           "etc/systemd/system/containerd.service.d", "etc/modules-load.d", "etc/sysctl.d", "var/log/kubeha", "tmp"]


def _libraries(binary: str) -> list[Path]:
    listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return [Path(path) for path in re.findall(r"(/\S+) \(0x", listing)]


def make_jail(folder: Path) -> Path:
    """A root holding only bash and the libraries it links (and the folders scripts write into)."""
    root = folder / "jail"
    bash = shutil.which("bash")
    assert bash
    for source in (Path(bash).resolve(), *_libraries(bash)):
        target = root / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin" / "bash").exists():
        shutil.copy2(Path(bash).resolve(), root / "bin" / "bash")
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    # A plain file stands in for the device (none can be made here): writes to it go nowhere that matters.
    (root / "dev").mkdir()
    (root / "dev" / "null").touch()
    return root


def run_in_jail(jail: Path, script: str, answers: dict[str, Answer] | None = None) -> list[list[str]]:
    """Run `script` in the jail (errexit off, so it goes as far as it can); the external commands
    it ran, each as its argument list. `answers`: what a command prints, by the start of its
    command line (arguments joined by spaces)."""
    # Off, so a stub's empty answer does not end the run before the lines under test.
    body = script.replace("set -euo pipefail", "set -uo pipefail")
    (jail / "run.sh").write_text(_stub(answers or {}) + body)
    result = subprocess.run(["unshare", "--user", "--map-root-user", "chroot", str(jail), "/bin/bash", "--norc",
                             "-c", "PATH=/nonexistent; source /run.sh 3>&1 >/output 2>&1 </dev/null"],
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return [record.replace("\x1d", "\n").split("\x1f")[:-1] for record in result.stdout.split("\x1e") if record]


def an_argument_holds(commands: list[list[str]], program: str, value: str) -> bool:
    return any(command[0] == program and any(value in argument for argument in command[1:]) for command in commands)


