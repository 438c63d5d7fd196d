"""Failover benchmark on the lab: the product's LB configuration against kubeadm's HA guide's, same hosts.

    python3 -m tests.lab.bench.failover [--runs N]      (make bench-failover; needs root)

Boots the lab and the product's cluster, the lab's shared `ha` topology (tests/lab/clusters.py;
a running one built with the same settings, as CI's `make lab-up`, is reused), then injects each
fault N times with
the product's keepalived/haproxy configuration and N times with the HA guide's (keepalived.conf,
check_apiserver.sh and haproxy.cfg exactly as in kubeadm's HA guide (ha-considerations), placeholders filled in),
while a client probes https://VIP:8443/readyz every 20 ms (fresh TLS connection, bounded count
and time) and timestamps every success and failure. Prints a table, writes
build/bench/failover.json (medians, worst cases, every sample) and one timeline PNG per fault
beside it. The apiserver faults take turns on cp2 and cp3, so that no apiserver is killed often
enough for its kubelet's restart back-off to keep it down (it grows to 5 minutes).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import string
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tests.lab.cluster import (
    HAPROXY_WAIT_DOWN,
    LOAD_BALANCERS,
    PORT,
    ROOT,
    VIP,
    LabStack,
    boot_cluster,
    tear_down_cluster,
    wait_for,
)
from tests.lab.clusters import TOPOLOGIES
from tests.lab.hosts import LAB_SCRIPT, lab, lab_address
from tests.lab.probe import Prober

HA_GUIDE_DIR = Path(__file__).resolve().parent / "ha-guide"
PRODUCT_FILES = ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/etc/keepalived/check_apiserver.sh"]
CONTROL_PLANES = {f"cp{index}": lab_address(20 + index) for index in (1, 2, 3)}
# Not cp1: cp1 runs kubeha's cluster-side steps (tokens, membership). Taking turns: a kubelet
# restarts a killed apiserver after a back-off that doubles with each restart (10 s ... 5 min).
VICTIM_APISERVERS = ("cp2", "cp3")
NO_RESTART = ("mkdir -p /run/systemd/system/haproxy.service.d && printf '[Service]\\nRestart=no\\n' "
              "> /run/systemd/system/haproxy.service.d/bench-no-restart.conf && systemctl daemon-reload")
RESTART_BACK = ("rm -f /run/systemd/system/haproxy.service.d/bench-no-restart.conf && systemctl daemon-reload "
                "&& systemctl start haproxy")


@dataclass
class Sample:
    config: str
    fault: str
    run: int
    # Fault until the VIP serves again, or until the apiserver is out of rotation; None when the
    # probe saw no outage: an invalid sample (the fault was not observed), never a zero.
    seconds: float | None
    failed_requests: int
    probes: int
    timeline: list[tuple[float, bool]] = field(default_factory=list)  # (seconds since the fault, ok)


@dataclass
class Bench:
    stack: LabStack
    ca_pem: str
    samples: list[Sample] = field(default_factory=list)
    stats_port: int = 9090  # the product's loadBalancer.statsPort, toggled by lb_rollout
    apiserver_faults: dict[str, int] = field(default_factory=dict)  # so far, per fault: picks the next victim

    def prober(self, retries: int = 0, max_seconds: float = 90) -> Prober:
        # A short timeout keeps the timeline fine-grained: a probe into a dead VIP fails after 0.1 s
        # (a healthy answer takes a few ms here).
        return Prober(VIP, PORT, self.ca_pem, interval=0.02, timeout=0.1, max_seconds=max_seconds,
                      max_probes=6000, retries=retries).start()

    def record(self, config: str, fault: str, run: int, prober: Prober, fault_at: float,
               seconds: float | None = None, unobserved: str = "") -> Sample:
        """`unobserved`: why the fault's end was not seen; the sample is then invalid (untimed)."""
        results = prober.stop()
        if seconds is None and fault in FAULT_KEYS and not unobserved:  # until the VIP serves again
            seconds = prober.served_again_after(fault_at)
        sample = Sample(config, fault, run, None if seconds is None else round(seconds, 3),
                        len(prober.failures), len(results),
                        [(round(r.at - fault_at, 3), r.ok) for r in results])
        self.samples.append(sample)
        if fault not in FAULT_KEYS:
            timed = "counts failed requests"
        elif sample.seconds is None:
            timed = f"invalid: {unobserved or 'no outage observed'}"
        else:
            timed = f"{sample.seconds:7.3f} s"
        print(f"  {config:8} {fault:28} run {run}: {timed}, {sample.failed_requests} failed "
              f"of {sample.probes}", flush=True)
        return sample

    # --- waiting for a healthy pair ------------------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
        if not wait_for(condition, seconds, interval=0.25):
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")

    def wait_stable(self) -> None:
        self.wait_until(self.stack.pair_healthy, "a single VIP holder with all apiservers UP")
        time.sleep(2)

    # --- faults ----------------------------------------------------------------------------

    def wait_for_recovery(self, prober: Prober, fault_at: float, seconds: float) -> None:
        wait_for(lambda: prober.recovered_after(fault_at), seconds, interval=0.05)
        time.sleep(1)  # a second of service after recovery, in the picture

    def vip_holder_power_off(self, config: str, run: int) -> None:
        holder = self.stack.vip_holders()[0]
        init = int(lab("init-pid", holder))
        prober = self.prober()
        time.sleep(1)
        # The plug is pulled here, at a known instant: lab.sh would first spend a variable
        # 50-400 ms finding PID 1, which is not part of the failover.
        fault_at = prober.now()
        os.kill(init, signal.SIGKILL)
        lab("power-off", holder)  # waits for the container to be gone and cleans up
        self.wait_for_recovery(prober, fault_at, 60)
        self.record(config, "vip_lb_poweroff", run, prober, fault_at)
        # The old holder comes back: does its return interrupt anything?
        prober = self.prober()
        fault_at = prober.now()
        lab("power-on", holder)
        self.wait_until(lambda: self.stack.hosts[holder].run("systemctl is-active keepalived haproxy").returncode == 0,
                        f"{holder}'s services")
        time.sleep(8)
        self.record(config, "holder_returns", run, prober, fault_at)
        self.wait_stable()

    def vip_holder_haproxy_death(self, config: str, run: int) -> None:
        holder = self.stack.hosts[self.stack.vip_holders()[0]]
        holder.run(NO_RESTART)  # killed for good: systemd would otherwise restart it within a second
        prober = self.prober()
        time.sleep(1)
        fault_at = prober.now()
        holder.run("pkill -KILL -x haproxy")
        self.wait_for_recovery(prober, fault_at, 75)
        self.record(config, "vip_haproxy_death", run, prober, fault_at)
        holder.run(RESTART_BACK)
        self.wait_stable()

    def apiserver_death(self, config: str, run: int) -> None:
        """One apiserver stops gracefully (its static pod taken away); time until the VIP holder's
        haproxy takes it out of rotation."""
        self.apiserver_fault(config, run, "apiserver_death", kill=False)

    def apiserver_kill(self, config: str, run: int) -> None:
        """One apiserver process gets SIGKILL (the kubelet restarts it); the same measurement."""
        self.apiserver_fault(config, run, "apiserver_kill", kill=True)

    def apiserver_fault(self, config: str, run: int, fault: str, kill: bool) -> None:
        holder = self.stack.vip_holders()[0]
        # Per fault, so each kind's runs alternate (one counter for both would give every kill to cp3).
        done = self.apiserver_faults.get(fault, 0)
        victim = VICTIM_APISERVERS[done % len(VICTIM_APISERVERS)]
        self.apiserver_faults[fault] = done + 1
        watcher = subprocess.Popen([str(LAB_SCRIPT), "ssh", holder, "python3", "-", victim],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        watcher.stdin.write(HAPROXY_WAIT_DOWN)
        watcher.stdin.close()
        assert watcher.stdout.readline().strip() == "ready"
        prober = self.prober(retries=1)  # the target is for a client that retries once
        time.sleep(1)
        fault_at, killed_at = prober.now(), time.monotonic()
        self.stack.stop_apiserver(victim, kill=kill)
        down_at = watcher.stdout.readline().strip()
        watcher.wait(timeout=40)
        time.sleep(1)
        if down_at:
            self.record(config, fault, run, prober, fault_at, seconds=float(down_at) - killed_at)
        else:
            # A killed apiserver the kubelet restarts at once can be back before a slow check
            # fails often enough (the HA guide's: every 2 s, 3 in a row): haproxy never takes it out
            # of rotation, and there is no time to measure. Its failed requests still count.
            self.record(config, fault, run, prober, fault_at,
                        unobserved=f"haproxy on {holder} never marked {victim} DOWN within 30 s")
        self.stack.start_apiserver(victim)
        self.wait_stable()

    def lb_rollout(self, config: str, run: int) -> None:
        """A one-setting LB change rolled out by `pulumi up` (the product only)."""
        self.stats_port = 9091 if self.stats_port == 9090 else 9090
        self.stack.pulumi("config", "set", "--path", "loadBalancer.statsPort", str(self.stats_port))
        prober = self.prober(max_seconds=300)
        fault_at = prober.now()
        self.stack.pulumi("up", "--yes", "--skip-preview")
        time.sleep(1)
        self.record(config, "lb_rollout", run, prober, fault_at)
        self.wait_stable()

    # --- configurations ------------------------------------------------------------------

    def save_product_files(self) -> None:
        for lb in LOAD_BALANCERS:
            self.stack.hosts[lb].run("mkdir -p /root/bench-product && cp " + " ".join(PRODUCT_FILES)
                                     + " /root/bench-product/")

    def restore_product_files(self) -> None:
        for lb in ("lb2", "lb1"):
            host = self.stack.hosts[lb]
            host.run("cp /root/bench-product/haproxy.cfg /etc/haproxy/ && cp /root/bench-product/keepalived.conf "
                     "/root/bench-product/check_apiserver.sh /etc/keepalived/ && systemctl restart haproxy keepalived")
        self.wait_stable()

    def apply_ha_guide(self) -> None:
        """The HA guide's three files on both LB hosts: lb1 MASTER/101, lb2 BACKUP/100, as the guide says."""
        for index, lb in enumerate(LOAD_BALANCERS):
            values = {"STATE": "MASTER" if index == 0 else "BACKUP", "INTERFACE": "host0", "ROUTER_ID": "51",
                      "PRIORITY": str(101 - index), "AUTH_PASS": "42", "APISERVER_VIP": VIP,
                      "APISERVER_DEST_PORT": str(PORT), "APISERVER_SRC_PORT": "6443"}
            host = self.stack.hosts[lb]
            for name, target in (("keepalived.conf", "/etc/keepalived/keepalived.conf"),
                                 ("check_apiserver.sh", "/etc/keepalived/check_apiserver.sh"),
                                 ("haproxy.cfg", "/etc/haproxy/haproxy.cfg")):
                # safe_substitute: the check script's own `$*` is shell, not a placeholder.
                text = string.Template(ha_guide_text(name)).safe_substitute(values)
                assert "${" not in text, f"unfilled placeholder in the HA guide's {name}"
                if name == "haproxy.cfg":  # observation only: the bench reads server states here
                    text = text.replace("    daemon\n", "    daemon\n    stats socket /run/haproxy/admin.sock mode 600 level admin\n", 1)
                host.run(f"cat > {target} <<'KUBEHA_BENCH_HA_GUIDE'\n{text}\nKUBEHA_BENCH_HA_GUIDE")
            host.run("chmod 0755 /etc/keepalived/check_apiserver.sh && haproxy -c -q -f /etc/haproxy/haproxy.cfg "
                     "&& systemctl restart haproxy keepalived")
        self.wait_stable()


def ha_guide_text(name: str) -> str:
    """An HA guide file; its `server ... # [...]` line is repeated for every control plane."""
    text = (HA_GUIDE_DIR / name).read_text()
    if name == "haproxy.cfg":
        template = "        server ${HOST1_ID} ${HOST1_ADDRESS}:${APISERVER_SRC_PORT} check\n        # [...]\n"
        servers = "".join(f"        server {cp} {address}:${{APISERVER_SRC_PORT}} check\n"
                          for cp, address in CONTROL_PLANES.items())
        text = text.replace(template, servers)
    return text


# --- results ------------------------------------------------------------------------------

FAULT_KEYS = {"vip_lb_poweroff": "vip_lb_poweroff_s", "vip_haproxy_death": "vip_haproxy_death_s",
              "apiserver_death": "apiserver_death_s", "apiserver_kill": "apiserver_kill_s"}
FAILED_KEYS = {"apiserver_death": "failed_requests_apiserver_death", "apiserver_kill": "failed_requests_apiserver_kill",
               "lb_rollout": "failed_requests_lb_rollout", "holder_returns": "failed_requests_holder_returns"}


def summarise(samples: list[Sample], config: str, runs: int) -> dict[str, float | int]:
    mine = [s for s in samples if s.config == config]
    summary: dict[str, float | int] = {}
    for fault, key in FAULT_KEYS.items():
        values = [s.seconds for s in mine if s.fault == fault and s.seconds is not None]
        invalid = sum(1 for s in mine if s.fault == fault and s.seconds is None)
        if invalid:
            summary[key.removesuffix("_s") + "_invalid_samples"] = invalid
        if values:
            summary[key] = round(statistics.median(values), 3)
            summary[key.removesuffix("_s") + "_max_s"] = round(max(values), 3)
    for fault, key in FAILED_KEYS.items():
        values = [s.failed_requests for s in mine if s.fault == fault]
        if values:
            summary[key] = max(values)
    summary["runs"] = runs
    return summary


def table(result: dict) -> str:
    """One column per configuration that ran (the HA guide's only with --configs product,ha-guide), and
    the ha-guide/product ratio when both did."""
    configs = [config for config in ("product", "ha-guide") if result[config].get("runs")]
    both = len(configs) == 2
    product, guide = result["product"], result["ha-guide"]
    lines = [f"{'fault':34}" + "".join(f" {config + ' median/max':>20}" for config in configs)
             + (f" {'guide/product':>13}" if both else "")]
    for key in FAULT_KEYS.values():
        worst = key.removesuffix("_s") + "_max_s"
        cells = "".join(f" {result[config].get(key, float('nan')):>9.3f} / "
                        f"{result[config].get(worst, float('nan')):<8.3f}" for config in configs)
        ratio = f"{guide[key] / product[key]:.0f}x" if both and product.get(key) and key in guide else "-"
        lines.append(f"{key:34}{cells}" + (f" {ratio:>13}" if both else ""))
    for key in FAILED_KEYS.values():
        lines.append(f"{key:34}" + "".join(f" {result[config].get(key, '-'):>20}" for config in configs))
    for key in sorted({k for config in configs for k in result[config] if k.endswith("_invalid_samples")}):
        lines.append(f"{key:34}" + "".join(f" {result[config].get(key, 0):>20}" for config in configs)
                     + "  (its end not observed: not timed)")
    return "\n".join(lines)


def draw(samples: list[Sample], folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pictures = []
    for fault in ("vip_lb_poweroff", "vip_haproxy_death", "apiserver_death", "apiserver_kill", "holder_returns"):
        firsts = [next((s for s in samples if s.fault == fault and s.config == config), None)
                  for config in ("product", "ha-guide")]
        firsts = [s for s in firsts if s is not None]
        if not firsts:
            continue
        figure, axes = plt.subplots(len(firsts), 1, figsize=(9, 2.2 * len(firsts)), sharex=True, squeeze=False)
        for axis, sample in zip(axes[:, 0], firsts, strict=True):
            ok = [t for t, good in sample.timeline if good]
            bad = [t for t, good in sample.timeline if not good]
            axis.scatter(ok, [1] * len(ok), s=4, color="tab:green", label="ok")
            axis.scatter(bad, [0] * len(bad), s=4, color="tab:red", label="failed")
            axis.axvline(0, color="black", linewidth=0.8)
            axis.set_yticks([0, 1], ["failed", "ok"])
            axis.set_ylim(-0.5, 1.5)
            timed = "untimed" if sample.seconds is None else f"{sample.seconds:.3f} s"
            axis.set_title(f"{sample.config}: {fault}, {timed}, {sample.failed_requests} failed "
                           f"of {sample.probes} probes", fontsize=9)
        axes[-1, 0].set_xlabel("seconds since the fault (probe every 20 ms, fresh TLS connection)")
        figure.tight_layout()
        path = folder / f"failover-{fault.replace('_', '-')}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        pictures.append(path)
    return pictures


def run_faults(bench: Bench, config: str, runs: int, faults: list[Callable[[str, int], None]]) -> None:
    for run in range(runs):
        print(f"{config} configuration, run {run + 1}/{runs}", flush=True)
        for fault in faults:
            fault(config, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "failover.json")
    parser.add_argument("--pictures", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    parser.add_argument("--configs", default="product,ha-guide", choices=["product,ha-guide", "product"],
                        help="product: the product's configuration only (CI: the HA guide's files never change, "
                             "so its figures need no new sample on every commit)")
    args = parser.parse_args()
    # The shared cluster's settings, kubeha's firewall on every host among them: failover must hold
    # with the rules in place.
    stack = boot_cluster(TOPOLOGIES["ha"].options)
    try:
        bench = Bench(stack, stack.cluster_ca)
        bench.wait_stable()
        run_faults(bench, "product", args.runs, [bench.vip_holder_power_off, bench.vip_holder_haproxy_death,
                                                 bench.apiserver_death, bench.apiserver_kill, bench.lb_rollout])
        if args.configs == "product,ha-guide":
            bench.save_product_files()
            bench.apply_ha_guide()
            run_faults(bench, "ha-guide", args.runs, [bench.vip_holder_power_off, bench.vip_holder_haproxy_death,
                                                  bench.apiserver_death, bench.apiserver_kill])
            bench.restore_product_files()
    finally:
        if not args.keep_lab:
            tear_down_cluster()
    result = {"product": summarise(bench.samples, "product", args.runs),
              "ha-guide": summarise(bench.samples, "ha-guide", args.runs if "ha-guide" in args.configs else 0),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.machine()} {platform.release()}",
              "samples": [asdict(sample) for sample in bench.samples]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.pictures.mkdir(parents=True, exist_ok=True)
    pictures = draw(bench.samples, args.pictures)
    print(table(result))
    print(f"wrote {args.out} and {', '.join(str(p.relative_to(ROOT)) for p in pictures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
