"""Runs the real __main__.py under Pulumi mocks and records every registration.

The stock mocks only see a resource's inputs; the recording monitor also keeps its parent,
dependencies and additional secret outputs, so tests can check ordering and secrecy.
"""
from __future__ import annotations

import json
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

PROJECT = "kubeha"
COMMAND = "command:remote:Command"
DYNAMIC_PREFIX = "pulumi-python:dynamic/kubeha:"  # components/dynamic_resource.py


def dynamic(class_name: str) -> str:
    """The type token of one of kubeha's dynamic resources."""
    return DYNAMIC_PREFIX + class_name
KUBEADM_JOIN_SCRIPTS = ("member_check", "mint", "join", "forget")
PREFLIGHT_SCRIPTS = ("facts_command",)
CREDENTIAL_SCRIPTS = ("issue", "revoke")
CERTIFICATE_SCRIPTS = ("expiry", "renew")
FAKE_BACKUP_KEY = "generated-backup-key-" + "x" * 43
FAKE_BACKUP_TIME = "2026-12-04T10:00:00Z"
MAIN = Path(__file__).resolve().parent.parent / "__main__.py"
FAKE_CA_HASH = "sha256:" + "ab" * 32
# admin.conf as kubeadm writes it: its server is the node's endpoint, which the program replaces.
FAKE_KUBECONFIG = ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n"
                   "    server: https://198.51.100.250:6443\n  name: kubernetes\n")


@dataclass
class Registration:
    type: str
    name: str
    parent: str
    dependencies: list[str]
    secret_outputs: list[str]
    inputs: dict[str, Any]
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    alias_specs: list[Any] = field(default_factory=list)

    @property
    def target_host(self) -> str | None:
        """The address a remote.Command connects to (a KubeadmJoin's joining node)."""
        if "node" in self.inputs:
            return self.inputs["node"]["address"]
        return unsecret(self.inputs.get("connection", {})).get("host")

    @property
    def cluster_side_host(self) -> str | None:
        """The control plane a KubeadmJoin makes its material on."""
        return self.inputs.get("cluster_side", {}).get("address")

    def input_is_secret(self, key: str) -> bool:
        return is_secret(self.inputs.get(key))


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unsecret(value: Any) -> Any:
    """The plain value inside a secret-wrapped input (or the value itself)."""
    return value["value"] if is_secret(value) else value


@dataclass
class Deployment:
    registrations: list[Registration]
    exports: dict[str, Any]
    secret_exports: set[str]
    urns: dict[str, str] = field(default_factory=dict)  # urn -> name

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, found {len(matches)}"
        return matches[0]

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def dynamic_resources(self) -> list[Registration]:
        return [r for r in self.registrations if r.type.startswith(DYNAMIC_PREFIX)]

    def scripts(self) -> dict[str, str]:
        """Every script sent to a host, as "resource:phase": each command's create and delete, and
        each KubeadmJoin's four (member_check, mint, join, forget), the preflight's facts, and the
        admin credential's issue and revoke, each control plane's certificate expiry and renewal
        and etcd backup status, and the upgrade's (its status and repository reads, and each node's steps)."""
        found: dict[str, str] = {}
        for registration in self.registrations:
            if registration.name == "cluster-settings":
                found["cluster-settings:release_check"] = registration.inputs["release_check"]["script"]
            if registration.name == "kubernetes-upgrade":
                found["kubernetes-upgrade:status"] = registration.inputs["status"]
                found.update({f"kubernetes-upgrade:{node}:{phase}": script
                              for node, steps in registration.inputs["scripts"].items()
                              for phase, script in steps.items() if script})
                continue
            phases = (KUBEADM_JOIN_SCRIPTS if registration.name.endswith("-kubeadm-join") else
                      PREFLIGHT_SCRIPTS if registration.name == "cluster-preflight" else
                      CREDENTIAL_SCRIPTS if registration.name == "cluster-admin-credential" else
                      CERTIFICATE_SCRIPTS if registration.name.endswith("-certificates") else
                      ("status",) if registration.name.startswith("etcd-backup-") and registration.name.endswith("-status") else
                      ("check", "restore") if registration.name == "etcd-restore" else ("create", "delete"))
            for phase in phases:
                if (registration.type == COMMAND or registration.type.startswith(DYNAMIC_PREFIX)) and registration.inputs.get(phase):
                    found[f"{registration.name}:{phase}"] = unsecret(registration.inputs[phase])
        return found

    def depends_on(self, name: str, other: str) -> bool:
        """True when `name` waits for `other`, directly or through a chain of dependencies."""
        by_name = {r.name: r for r in self.registrations}
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            for dependency in by_name[current].dependencies:
                dependency_name = self.urns.get(dependency, "")
                if dependency_name == other:
                    return True
                if dependency_name and dependency_name not in seen:
                    seen.add(dependency_name)
                    pending.append(dependency_name)
        return False


class _FakeOutputs(pulumi.runtime.Mocks):
    """Commands answer with plausible stdout; everything else echoes its inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.name == "cluster-admin-credential":
            outputs.update(kubeconfig=FAKE_KUBECONFIG, user="kubeha-admin-20261203000000",
                           not_after="2027-12-03T00:00:00+00:00")
        if args.name.endswith("-certificates"):
            outputs["earliest_expiry"] = f"2027-12-0{args.name[2]}T00:00:00+00:00"  # cp1 earliest
        if args.name == "etcd-backup-key":
            outputs["key"] = FAKE_BACKUP_KEY
        if args.name.startswith("etcd-backup-") and args.name.endswith("-status"):
            outputs.update(newest={"file": f"/var/lib/kubeha/etcd-backup/{args.name}.tar.enc", "time": FAKE_BACKUP_TIME,
                                   "revision": 42, "sizeBytes": 4096}, interval_seconds=0, last_result="success")
        if args.typ == "command:remote:Command":
            outputs["stdout"] = self._stdout_for(args.name)
            outputs["stderr"] = ""
        return f"{args.name}-id", outputs

    @staticmethod
    def _stdout_for(name: str) -> str:
        if name.endswith("-ca-cert-hash"):
            return FAKE_CA_HASH
        if name.endswith("-kubeconfig"):
            return FAKE_KUBECONFIG
        return "ok"

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self) -> None:
        super().__init__(_FakeOutputs())
        self.registrations: list[Registration] = []
        self.urn_names: dict[str, str] = {}

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.urn_names[response.urn] = request.name
            self.registrations.append(Registration(
                type=request.type, name=request.name, parent=request.parent,
                dependencies=list(request.dependencies), secret_outputs=list(request.additionalSecretOutputs),
                inputs=rpc.deserialize_properties(request.object), ignore_changes=list(request.ignoreChanges),
                retain_on_delete=request.retainOnDelete, alias_specs=list(request.aliases)))
        return response


_last_monitor: "_RecordingMonitor | None" = None


def _run(config: dict[str, Any], secret_config: dict[str, str] | None,
         preview: bool) -> tuple[_RecordingMonitor, dict[str, Any]]:
    global _last_monitor
    monitor = _last_monitor = _RecordingMonitor()
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack="test", preview=preview, monitor=monitor)
    all_config = {f"{PROJECT}:{key}": json.dumps(value) for key, value in config.items()}
    all_config.update({f"{PROJECT}:{key}": value for key, value in (secret_config or {}).items()})
    pulumi.runtime.set_all_config(all_config, [f"{PROJECT}:{key}" for key in (secret_config or {})])
    # As the language host passes it: the whole stack config in PULUMI_CONFIG too (what kubeha
    # reads to find keys it does not know).
    os.environ["PULUMI_CONFIG"] = json.dumps(all_config)

    exports: dict[str, Any] = {}
    original_export: Callable[[str, Any], None] = pulumi.export
    pulumi.export = lambda name, value: exports.__setitem__(name, value)  # type: ignore[assignment]
    try:
        runpy.run_path(str(MAIN), run_name="__main__")
        _sync_await(wait_for_rpcs())
    finally:
        pulumi.export = original_export  # type: ignore[assignment]
        os.environ.pop("PULUMI_CONFIG", None)
    return monitor, exports


def run_program(config: dict[str, Any], secret_config: dict[str, str] | None = None,
                preview: bool = False) -> Deployment:
    """Run __main__.py with this stack config; return what it registered and exported."""
    monitor, exports = _run(config, secret_config, preview)
    resolved, secret = {}, set()
    for name, value in exports.items():
        output = pulumi.Output.from_input(value)
        resolved[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret.add(name)
    return Deployment(monitor.registrations, resolved, secret, monitor.urn_names)


def run_program_expecting_error(config: dict[str, Any], secret_config: dict[str, str] | None = None
                                ) -> tuple[Exception, list[Registration]]:
    """Run a program that must fail; return the error and whatever it registered before failing."""
    monitor = None
    try:
        monitor, _ = _run(config, secret_config, preview=True)
    except Exception as error:  # noqa: BLE001 - the error is what the caller inspects
        return error, list(_last_monitor.registrations) if _last_monitor else []
    raise AssertionError(f"the program succeeded; registered {len(monitor.registrations)} resources")
