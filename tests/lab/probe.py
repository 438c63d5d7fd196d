"""A bounded HTTPS prober of the cluster endpoint: fixed rate, bounded count and time.

Each probe is a fresh TLS connection (verified against the cluster CA) asking for /readyz, like
a new client would; every success and failure is timestamped. Runs in a thread and stops by
itself after max_seconds or max_probes, whichever comes first.
"""
from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProbeResult:
    at: float  # seconds since the prober started
    ok: bool
    detail: str
    attempts: int = 1  # more than 1: the first attempt failed and was retried (Prober.retries)


@dataclass
class Prober:
    host: str
    port: int
    ca_pem: str
    interval: float = 0.05
    timeout: float = 1.0
    max_seconds: float = 120.0
    max_probes: int = 2400
    retries: int = 0  # a failed probe is retried this many times at once before it counts as failed
    results: list[ProbeResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._context = ssl.create_default_context(cadata=self.ca_pem)

    def probe_once(self) -> tuple[bool, str]:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=self.timeout)
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            return response.status == 200 and body == "ok", f"HTTP {response.status} {body[:40]}"
        except (OSError, http.client.HTTPException) as error:
            return False, f"{type(error).__name__}: {error}"
        finally:
            connection.close()

    def now(self) -> float:
        """Seconds since the prober started, on the clock of its results."""
        return time.monotonic() - self._started

    def _run(self) -> None:
        started = self._started
        while not self._stop.is_set() and len(self.results) < self.max_probes:
            now = time.monotonic() - started
            if now > self.max_seconds:
                break
            ok, detail = self.probe_once()
            attempts = 1
            while not ok and attempts <= self.retries:
                ok, detail = self.probe_once()
                attempts += 1
            self.results.append(ProbeResult(round(now, 4), ok, detail, attempts))
            time.sleep(max(0.0, self.interval - (time.monotonic() - started - now)))

    def start(self) -> Prober:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[ProbeResult]:
        self._stop.set()
        self._thread.join(timeout=self.timeout * (self.retries + 1) + 5)
        return self.results

    @property
    def failures(self) -> list[ProbeResult]:
        return [result for result in self.results if not result.ok]

    def _first_failure_since(self, moment: float) -> float | None:
        return next((r.at for r in self.results if not r.ok and r.at >= moment), None)

    def _first_success_after(self, moment: float) -> float | None:
        return next((r.at for r in self.results if r.ok and r.at > moment), None)

    def recovered_after(self, moment: float) -> bool:
        """True once a success follows the first failure since moment."""
        first_failure = self._first_failure_since(moment)
        return first_failure is not None and self._first_success_after(first_failure) is not None

    def served_again_after(self, moment: float) -> float | None:
        """From moment to the first success after the first failure since moment; None when no
        probe failed (the outage was not observed, so there is nothing to time)."""
        first_failure = self._first_failure_since(moment)
        if first_failure is None:
            return None
        recovered = self._first_success_after(first_failure)
        return (recovered if recovered is not None else self.results[-1].at) - moment
