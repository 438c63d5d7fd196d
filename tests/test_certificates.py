"""Control-plane certificates: the expiry kubeadm reports, when `pulumi up` renews, one control
plane at a time. The lab renews them on real Kubernetes (tests/lab/test_cluster_lab.py)."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.day2 import certificates
from components.day2.certificates import DAY_S, _CertificatesProvider, earliest_expiry
from components.ssh.ssh_session import RemoteScriptFailed, ScriptResult

# What real `kubeadm certs check-expiration -o json` printed for certificates made by
# `kubeadm init phase certs all` (the kubeconfigs missing).
RECORDED = (Path(__file__).parent / "recorded" / "kubeadm-check-expiration.json").read_text()
NOW = 1_800_000_000.0


def report(days_left: float) -> str:
    """The recorded report with every certificate it has expiring `days_left` after NOW."""
    expires = datetime.datetime.fromtimestamp(NOW + days_left * DAY_S, datetime.timezone.utc)
    parsed = json.loads(RECORDED)
    for certificate in parsed["certificates"]:
        if not certificate["missing"]:
            certificate["expirationDate"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(parsed)


def props(renew_before_days: int = 30) -> dict[str, Any]:
    return {"node_name": "cp1", "node": {"address": "10.0.0.1", "port": 22, "user": "root"}, "private_key": "KEY",
            "renew_before_days": renew_before_days, "expiry": "EXPIRY", "renew": "RENEW",
            "earliest_expiry": None, "renew_at": None}


@pytest.fixture
def host(monkeypatch) -> dict[str, Any]:
    """cp1, whose certificates expire in `days_left` days until it renews them (then 365)."""
    state: dict[str, Any] = {"days_left": 200.0, "ran": []}

    def run_over_ssh(target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        state["ran"].append(command)
        if command == "RENEW":
            state["days_left"] = 365.0
            return ScriptResult(0, "renewed", "")
        return ScriptResult(0, report(state["days_left"]), "")
    monkeypatch.setattr(certificates, "run_over_ssh", run_over_ssh)
    monkeypatch.setattr(certificates.time, "time", lambda: NOW)
    return state


def test_the_earliest_expiry_leaves_out_missing_certificates():
    assert earliest_expiry(RECORDED).isoformat() == "2027-12-03T07:50:16+00:00"


def test_certificates_far_from_expiry_are_only_read(host):
    outs = _CertificatesProvider().create(props()).outs
    assert host["ran"] == ["EXPIRY"]
    assert outs["renew_at"] == pytest.approx(NOW + (200 - 30) * DAY_S, abs=1)


def test_certificates_inside_the_window_are_renewed_and_read_again(host):
    host["days_left"] = 20.0
    outs = _CertificatesProvider().create(props()).outs
    assert host["ran"] == ["EXPIRY", "RENEW", "EXPIRY"]
    assert outs["renew_at"] == pytest.approx(NOW + (365 - 30) * DAY_S, abs=1)


def test_before_the_window_nothing_changes(host):
    assert not _CertificatesProvider().diff("cp1", {**props(), "renew_at": NOW + 1}, props()).changes


def test_inside_the_window_the_next_up_renews(host):
    assert _CertificatesProvider().diff("cp1", {**props(), "renew_at": NOW - 1}, props()).changes


def test_a_new_login_is_recorded_by_a_read_over_it(host):
    assert _CertificatesProvider().diff("cp1", {**props(), "renew_at": NOW + 1},
                                        {**props(), "private_key": "ROTATED"}).changes
    _CertificatesProvider().update("cp1", {**props(), "renew_at": NOW + 1}, {**props(), "private_key": "ROTATED"})
    assert host["ran"] == ["EXPIRY"]  # read, not renewed


def test_a_new_window_is_applied(host):
    assert _CertificatesProvider().diff("cp1", {**props(), "renew_at": NOW + 1}, props(60)).changes


def test_a_refresh_reads_the_dates_again(host):
    host["days_left"] = 10.0
    recorded = {**props(), "renew_at": NOW + 100 * DAY_S}
    assert _CertificatesProvider().read("cp1", recorded).outs["renew_at"] == pytest.approx(NOW - 20 * DAY_S, abs=1)


def test_a_refresh_keeps_the_record_of_a_host_that_is_down(monkeypatch):
    def down(*_args, **_kwargs) -> ScriptResult:
        raise RemoteScriptFailed("10.0.0.1: no SSH session after 6 attempts")
    monkeypatch.setattr(certificates, "run_over_ssh", down)
    recorded = {**props(), "renew_at": 5.0}
    assert _CertificatesProvider().read("cp1", recorded).outs == recorded


# Wiring ----------------------------------------------------------------------------------------

def test_one_control_plane_renews_at_a_time(deployment):
    assert deployment.depends_on("cp2-certificates", "cp1-certificates")
    assert deployment.depends_on("cp3-certificates", "cp2-certificates")


def test_certificates_are_looked_after_once_every_node_is_a_member(deployment):
    for name in ("cp3-membership", "w2-membership"):
        assert deployment.depends_on("cp1-certificates", name), name


def test_the_earliest_expiry_of_all_control_planes_is_a_stack_output(deployment):
    assert deployment.exports["certificatesExpire"] == "2027-12-01T00:00:00+00:00"


def test_a_renewal_window_out_of_range_is_refused_naming_the_key(stack_config):
    stack_config["certificates"] = {"renewBeforeDays": 200}
    with pytest.raises(ConfigError, match=r"kubeha:certificates.renewBeforeDays"):
        parse_cluster_config(stack_config)
