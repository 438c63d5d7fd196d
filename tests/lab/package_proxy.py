"""A forward HTTP proxy on the lab bridge, as a site's package proxy (`packages.proxy`): it records
every request and forwards plain-HTTP GETs to the lab's own addresses only. Anything else (a
CONNECT, an address off the lab) is refused with 403 and recorded, so a download that reaches it
is seen, and nothing leaves the lab through it."""
from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

from tests.lab.hosts import BRIDGE_ADDRESS, NETWORK

LAB_NETWORK = ipaddress.ip_network(NETWORK)
ADDRESS = (BRIDGE_ADDRESS, 3142)
URL = f"http://{ADDRESS[0]}:{ADDRESS[1]}"
# Straight to the lab's repository, whatever the environment says about proxies.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ProxiedRequest:
    client: str
    method: str
    url: str
    status: int


# Linux's IP_FREEBIND (not named in Python's socket module): the proxy starts before the lab's
# bridge, and so its address, exists, and serves once the bridge is up.
_IP_FREEBIND = 15


class _FreeBindServer(http.server.ThreadingHTTPServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
        super().server_bind()


@dataclass
class PackageProxy:
    seen: list[ProxiedRequest] = field(default_factory=list)
    _server: Optional[http.server.ThreadingHTTPServer] = None

    def start(self) -> "PackageProxy":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self, status: int) -> None:
                proxy.seen.append(ProxiedRequest(self.client_address[0], self.command, self.path, status))

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                target = urllib.parse.urlsplit(self.path)
                try:
                    allowed = target.scheme == "http" and ipaddress.ip_address(target.hostname or "") in LAB_NETWORK
                except ValueError:
                    allowed = False
                if not allowed:
                    self._record(403)
                    self.send_error(403, "the lab proxy forwards to lab addresses only")
                    return
                try:
                    with _DIRECT.open(self.path, timeout=30) as upstream:
                        body, status = upstream.read(), upstream.status
                except urllib.error.HTTPError as error:
                    body, status = error.read(), error.code
                self._record(status)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_CONNECT(self) -> None:  # noqa: N802
                self._record(403)
                self.send_error(403, "the lab proxy does not tunnel")

            def log_message(self, *_args) -> None:
                return None

        self._server = _FreeBindServer(ADDRESS, Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
