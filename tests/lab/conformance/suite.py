"""The Kubernetes conformance suite, run against a lab cluster the way the conformance image runs it.

The suite is the release's own e2e.test with ginkgo as its parallel runner (built by build.sh);
its images are made here (images.py) and imported into every node's containerd before a run, as
the nodes of a site without internet access would have them preloaded. A run is two ginkgo runs,
as the conformance image's E2E_PARALLEL mode does: the tests not marked [Serial] in parallel, then
the [Serial] ones alone. Each writes its JUnit report; the summary counts what they say.
"""
from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tests.lab.cluster import KUBE_DIR
from tests.lab.hosts import LAB_SCRIPT, LabHost

SUITE_DIR = KUBE_DIR / "conformance"
E2E_TEST = SUITE_DIR / "bin" / "e2e.test"
GINKGO = SUITE_DIR / "bin" / "ginkgo"
IMAGES_DIR = SUITE_DIR / "images"
SKIP_LIST = Path(__file__).resolve().parent / "skip-list.yaml"
CONFORMANCE = r"\[Conformance\]"
SERIAL = r"\[Serial\]"
# The smoke subset (`make conformance SMOKE=1`): sig-network (Services, DNS, EndpointSlices), sig-node (exec, logs,
# probes), sig-apps (Deployments, StatefulSets) and sig-auth (RBAC, ServiceAccounts); each a
# [Conformance] test's full name, none [Serial], so they run in parallel in a few minutes.
SMOKE = (
    "[sig-network] Services should serve a basic endpoint from pods [Conformance]",
    "[sig-network] Services should serve multiport endpoints from pods [Conformance]",
    "[sig-network] Services should be able to create a functioning NodePort service [Conformance]",
    "[sig-network] DNS should provide DNS for the cluster [Conformance]",
    "[sig-network] DNS should provide DNS for services [Conformance]",
    "[sig-network] EndpointSlice should create and delete Endpoints and EndpointSlices for a Service with a "
    "selector specified [Conformance]",
    "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http "
    "[NodeConformance] [Conformance]",
    "[sig-node] Pods should support remote command execution over websockets [NodeConformance] [Conformance]",
    "[sig-node] Pods should support retrieving logs from the container over websockets [NodeConformance] "
    "[Conformance]",
    "[sig-node] Probing container with readiness probe should not be ready before initial delay and never "
    "restart [NodeConformance] [Conformance]",
    "[sig-node] Probing container should be restarted with a /healthz http liveness probe [NodeConformance] "
    "[Conformance]",
    "[sig-cli] Kubectl logs logs should be able to retrieve and filter logs [Conformance]",
    "[sig-apps] Deployment RollingUpdateDeployment should delete old pods and create new ones [Conformance]",
    "[sig-apps] Deployment deployment should support proportional scaling [Conformance]",
    "[sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] Should recreate evicted "
    "statefulset [Conformance]",
    "[sig-apps] ReplicaSet should serve a basic image on each replica with a public image [Conformance]",
    "[sig-auth] ServiceAccounts should mount an API token into pods [Conformance]",
    "[sig-auth] ServiceAccounts ServiceAccountIssuerDiscovery should support OIDC discovery of service account "
    "issuer [Conformance]",
    "[sig-auth] SubjectReview should support SubjectReview API operations [Conformance]",
    "[sig-api-machinery] AdmissionWebhook [Privileged:ClusterAdmin] should be able to deny pod and configmap "
    "creation [Conformance]",
)


@dataclass(frozen=True)
class Skipped:
    """A skip list entry: a conformance test that cannot pass here for a reason of the lab's."""

    test: str
    why: str


def skip_list(path: Path = SKIP_LIST) -> list[Skipped]:
    entries = yaml.safe_load(path.read_text()) or []
    return [Skipped(entry["test"], entry["why"]) for entry in entries]


def go_regexp_literal(text: str) -> str:
    """`text` as a Go (RE2) regexp matching it literally, but for the spaces: any run of them matches
    a run (a test's name has two before a tag where an older release had an empty one)."""
    escaped = "".join("\\" + character if character in r"\.+*?()|[]{}^$" else character for character in text)
    return re.sub(" +", " +", escaped)



def any_of(names: list[str] | tuple[str, ...]) -> str:
    return "|".join(go_regexp_literal(name) for name in names)


def images() -> list[Path]:
    listed = IMAGES_DIR / "list"
    if not listed.exists():
        raise SystemExit(f"{listed} is missing: `make conformance-build` makes the suite's images")
    return sorted(IMAGES_DIR.glob("*.tar"))


def image_identity(archive: Path) -> tuple[str, str]:
    """(name, image ID) of a single-image docker archive: its tag and its config's digest."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None, archive
        [manifest] = json.load(member)
    return manifest["RepoTags"][0], "sha256:" + manifest["Config"].removesuffix(".json")


def node_images(host: LabHost) -> set[tuple[str, str]]:
    """(name, image ID) of every image a node's container runtime has."""
    listed = json.loads(host.run("crictl images --output json").stdout)["images"]
    return {(tag, image["id"]) for image in listed for tag in image.get("repoTags") or []}


def load_images(hosts: list[LabHost]) -> None:
    """Every suite image into every node's containerd, under its name, the nodes side by side: the
    images a node lacks, or has under that name with other contents (made again since)."""
    archives = {archive: image_identity(archive) for archive in images()}

    def load(host: LabHost) -> None:
        present = node_images(host)
        for archive in [archive for archive, identity in archives.items() if identity not in present]:
            with archive.open("rb") as stream:
                result = subprocess.run([str(LAB_SCRIPT), "ssh", host.name,
                                         "ctr --namespace k8s.io images import --all-platforms -"],
                                        stdin=stream, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise AssertionError(f"{host.name}: importing {archive.name} failed: {result.stderr}")

    with ThreadPoolExecutor(max_workers=len(hosts) or 1) as pool:
        list(pool.map(load, hosts))  # list(): a node's failure is raised here


@dataclass
class PhaseResult:
    name: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # conformance tests the run skipped itself
    seconds: float = 0.0
    exit_code: int = 0


def conformance_results(junit: Path, phase: PhaseResult) -> None:
    """The [Conformance] test cases of a JUnit report, by outcome (tests filtered out are not counted)."""
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "").removeprefix("[It] ")
        if "[Conformance]" not in name:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            phase.failed.append(name)
        elif (skipped := case.find("skipped")) is not None:
            # "skipped" alone: filtered out by focus or skip; "skipped - REASON": the test skipped itself.
            if skipped.get("message", "").startswith("skipped - "):
                phase.skipped.append(name)
        else:
            phase.passed.append(name)


def run_phase(name: str, kubeconfig: Path, report_dir: Path, focus: str, skip: str, procs: int,
              log: Path) -> PhaseResult:
    """One ginkgo run of e2e.test, with the options the conformance image passes."""
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [str(GINKGO), f"--focus={focus}", f"--skip={skip}", "--no-color",
               "--timeout=24h", *([f"--procs={procs}"] if procs > 1 else []), str(E2E_TEST), "--",
               "--disable-log-dump", "--provider=skeleton", f"--report-dir={report_dir}", f"--kubeconfig={kubeconfig}"]
    started = time.monotonic()
    with log.open("w") as output:
        exit_code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, cwd=report_dir).returncode
    phase = PhaseResult(name, seconds=round(time.monotonic() - started, 1), exit_code=exit_code)
    for junit in sorted(report_dir.glob("junit_*.xml")):
        conformance_results(junit, phase)
    return phase


@dataclass
class SuiteRun:
    phases: list[PhaseResult]
    skip_listed: list[Skipped]
    started: str

    @property
    def failed(self) -> list[str]:
        return [name for phase in self.phases for name in phase.failed]

    def ok(self) -> bool:
        # A ginkgo run that failed without a failed test (it could not start, or timed out) fails too.
        return not self.failed and all(phase.exit_code == 0 for phase in self.phases)

    def table(self) -> str:
        rows = [f"{'phase':<10} {'passed':>7} {'failed':>7} {'skipped':>8} {'time':>9}"]
        for phase in self.phases:
            rows.append(f"{phase.name:<10} {len(phase.passed):>7} {len(phase.failed):>7} {len(phase.skipped):>8} "
                        f"{phase.seconds / 60:>7.1f} m")
        total = sum(phase.seconds for phase in self.phases)
        rows.append(f"{'all':<10} {sum(len(p.passed) for p in self.phases):>7} {len(self.failed):>7} "
                    f"{sum(len(p.skipped) for p in self.phases):>8} {total / 60:>7.1f} m")
        rows.append(f"skip list: {len(self.skip_listed)} tests (tests/lab/conformance/skip-list.yaml)")
        rows.extend(f"FAILED {name}" for name in self.failed)
        return "\n".join(rows)

    def write(self, out_dir: Path) -> None:
        summary = {"started": self.started, "ok": self.ok(), "phases": [asdict(phase) for phase in self.phases],
                   "skip_list": [asdict(entry) for entry in self.skip_listed]}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out_dir / "summary.txt").write_text(self.table() + "\n")


def run_suite(kubeconfig: Path, out_dir: Path, focus: str = CONFORMANCE, skip: str = "", procs: int = 4,
              serial: bool = True) -> SuiteRun:
    """The parallel phase, then (`serial`) the serial one, each skipping the skip list and `skip`."""
    listed = skip_list()
    skips = [pattern for pattern in (skip, any_of([entry.test for entry in listed])) if pattern]
    run = SuiteRun([], listed, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    phases = [("parallel", focus, "|".join([SERIAL, *skips]), procs)]
    if serial:
        phases.append(("serial", f"{SERIAL}.*(?:{focus})|(?:{focus}).*{SERIAL}", "|".join(skips), 1))
    for name, phase_focus, phase_skip, phase_procs in phases:
        run.phases.append(run_phase(name, kubeconfig, out_dir / name, phase_focus, phase_skip, phase_procs,
                                    out_dir / f"{name}.log"))
    run.write(out_dir)
    return run
