"""Shared code of the lab's TEST STAND-INS for kubeadm, kube-apiserver, etcd and kubectl.

None of this is Kubernetes. The real binaries cannot be installed on this machine, so the lab
hosts get small, strict imitations that check what the product hands them (flags, config,
tokens, hashes, certificates) the way the real tools do, and fail loudly when it is wrong.
Installed on lab hosts into /usr/local/lib/kubeha-standins; never part of the product.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, NoReturn
from urllib.parse import parse_qs, urlparse

import yaml

VERSION = "v1.31.4"
# Lab hosts log to /var/log; the tests, running kubectl from the clone, point this elsewhere.
LOG_FILE = Path(os.environ.get("KUBEHA_STANDIN_LOG", "/var/log/kubeha-standins.log"))
KUBERNETES_DIR = Path("/etc/kubernetes")
PKI_DIR = KUBERNETES_DIR / "pki"
STATE_DIR = Path("/var/lib/kubeha-standin")
ETCD_PORT = 2379
SECRET_FLAGS = ("--certificate-key", "--token", "--discovery-token")


class StandinError(Exception):
    """A check failed: the caller prints it and exits non-zero, like the real tool would."""


def log_call(tool: str, argv: list[str]) -> None:
    """Every call is logged on the host (secrets masked)."""
    shown, hide_next = [], False
    for arg in argv:
        if hide_next:
            shown.append("<hidden>")
            hide_next = False
        elif arg in SECRET_FLAGS:
            shown.append(arg)
            hide_next = True
        elif arg.split("=", 1)[0] in SECRET_FLAGS:
            shown.append(arg.split("=", 1)[0] + "=<hidden>")
        else:
            shown.append(arg)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    with LOG_FILE.open("a", encoding="utf-8") as log:
        log.write(f"{stamp} {tool} {shlex.join(shown)}\n")


def die(tool: str, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    try:
        with LOG_FILE.open("a", encoding="utf-8") as log:
            log.write(f"  -> {tool} FAILED: {message}\n")
    except OSError:
        pass
    sys.exit(1)


def run_main(tool: str, main: Any) -> None:
    log_call(tool, sys.argv[1:])
    try:
        sys.exit(main(sys.argv[1:]))
    except StandinError as error:
        die(tool, str(error))


# --- certificates, with the openssl CLI -------------------------------------------------------

def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if result.returncode != 0:
        raise StandinError(f"openssl {' '.join(args[:2])}: {result.stderr.decode().strip()}")
    return result.stdout


def new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    path.chmod(0o600)


def new_ca(base: Path, common_name: str) -> None:
    """base.crt/base.key: a self-signed CA for ten years, as kubeadm makes them."""
    new_key(base.with_suffix(".key"))
    openssl("req", "-x509", "-new", "-key", str(base.with_suffix(".key")), "-subj", f"/CN={common_name}",
            "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-out", str(base.with_suffix(".crt")))


def _subject(common_name: str, organizations: tuple[str, ...]) -> str:
    return "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"


def sign_csr(csr_pem: bytes, ca: Path, *, server_sans: list[str] | None = None, client: bool = True) -> bytes:
    """Sign a CSR with ca.crt/ca.key for a year; SANs as given (nothing added)."""
    usages = ["serverAuth"] if server_sans is not None else []
    if client:
        usages.append("clientAuth")
    extensions = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                  f"extendedKeyUsage={','.join(usages)}"]
    if server_sans:
        extensions.append("subjectAltName=" + ",".join(
            f"IP:{san}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", san) else f"DNS:{san}"
            for san in server_sans))
    with tempfile.TemporaryDirectory() as scratch:
        csr_file, ext_file = Path(scratch, "req.csr"), Path(scratch, "ext.cnf")
        csr_file.write_bytes(csr_pem)
        ext_file.write_text("[v3]\n" + "\n".join(extensions) + "\n")
        return openssl("x509", "-req", "-in", str(csr_file), "-CA", str(ca.with_suffix(".crt")),
                       "-CAkey", str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "365",
                       "-extfile", str(ext_file), "-extensions", "v3")


def new_csr(key: Path, common_name: str, organizations: tuple[str, ...] = ()) -> bytes:
    if not key.exists():
        new_key(key)
    return openssl("req", "-new", "-key", str(key), "-subj", _subject(common_name, organizations))


def new_cert(base: Path, ca: Path, common_name: str, organizations: tuple[str, ...] = (), *,
             server_sans: list[str] | None = None, client: bool = True) -> None:
    """base.crt/base.key signed by ca.crt/ca.key."""
    csr = new_csr(base.with_suffix(".key"), common_name, organizations)
    base.with_suffix(".crt").write_bytes(sign_csr(csr, ca, server_sans=server_sans, client=client))


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA's DER SubjectPublicKeyInfo."""
    public_pem = openssl("x509", "-pubkey", "-noout", stdin=ca_pem)
    der = openssl("pkey", "-pubin", "-outform", "der", stdin=public_pem)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def peer_identity(cert: dict[str, Any] | None) -> tuple[str, list[str]]:
    """(common name, organizations) of a verified client certificate from ssl.getpeercert()."""
    if not cert:
        return "", []
    names = [pair for rdn in cert.get("subject", ()) for pair in rdn]
    return (next((value for key, value in names if key == "commonName"), ""),
            [value for key, value in names if key == "organizationName"])


# --- bootstrap tokens and the cluster-info signature -----------------------------------------

TOKEN_PATTERN = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_detached(payload: str, token_id: str, token_secret: str) -> str:
    """The detached JWS (HS256, key = token secret) bootstrap signers put into cluster-info."""
    header = b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url(payload.encode())}".encode()
    signature = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{b64url(signature)}"


# --- kubeconfig files ------------------------------------------------------------------------

def kubeconfig_text(cluster_name: str, server: str, ca_pem: bytes, user: str,
                    cert_pem: bytes | None = None, key_pem: bytes | None = None) -> str:
    user_entry: dict[str, str] = {}
    if cert_pem is not None and key_pem is not None:
        user_entry = {"client-certificate-data": base64.b64encode(cert_pem).decode(),
                      "client-key-data": base64.b64encode(key_pem).decode()}
    document = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "contexts": [{"name": f"{user}@{cluster_name}", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": f"{user}@{cluster_name}",
        "users": [{"name": user, "user": user_entry}] if user_entry else [],
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class Kubeconfig:
    server: str
    ca_pem: bytes
    cert_pem: bytes | None
    key_pem: bytes | None

    @classmethod
    def parse(cls, text: str) -> Kubeconfig:
        document = yaml.safe_load(text)
        if not isinstance(document, dict) or document.get("kind") != "Config":
            raise StandinError("not a kubeconfig (kind: Config expected)")
        context_name = document.get("current-context")
        context = next((c["context"] for c in document.get("contexts", []) if c["name"] == context_name), None)
        if context is None:
            raise StandinError(f"kubeconfig: current-context {context_name!r} not found")
        cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
        user = next((u["user"] for u in document.get("users", []) if u["name"] == context.get("user")), {})
        decode = (lambda key: base64.b64decode(user[key]) if key in user else None)
        return cls(server=cluster["server"], ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
                   cert_pem=decode("client-certificate-data"), key_pem=decode("client-key-data"))

    @classmethod
    def load(cls, path: Path) -> Kubeconfig:
        try:
            return cls.parse(path.read_text())
        except OSError as error:
            raise StandinError(f"cannot read kubeconfig {path}: {error.strerror}") from error


# --- HTTPS ------------------------------------------------------------------------------------

def split_host_port(endpoint: str) -> tuple[str, int]:
    endpoint = endpoint.removeprefix("https://").rstrip("/")
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise StandinError(f"endpoint {endpoint!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    """TLS to an apiserver (or the etcd stand-in): verified against ca_pem unless ca_pem is None."""

    def __init__(self, endpoint: str, ca_pem: bytes | None, *, cert_pem: bytes | None = None,
                 key_pem: bytes | None = None, bearer: str | None = None, timeout: float = 10) -> None:
        self.host, self.port = split_host_port(endpoint)
        self.bearer, self.timeout = bearer, timeout
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca_pem is None:  # kubeadm's first discovery call: CA not yet known
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context.load_verify_locations(cadata=ca_pem.decode())
        if cert_pem is not None and key_pem is not None:
            with tempfile.TemporaryDirectory() as scratch:  # ssl only loads client keys from files
                cert_file, key_file = Path(scratch, "c.crt"), Path(scratch, "c.key")
                cert_file.write_bytes(cert_pem)
                key_file.write_bytes(key_pem)
                self.context.load_cert_chain(str(cert_file), str(key_file))

    @classmethod
    def from_kubeconfig(cls, config: Kubeconfig) -> ApiClient:
        return cls(config.server, config.ca_pem, cert_pem=config.cert_pem, key_pem=config.key_pem)

    def request(self, method: str, path: str, body: Any = None) -> Response:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.read())
        except ssl.SSLCertVerificationError as error:
            raise StandinError(f"TLS to https://{self.host}:{self.port} not trusted: {error.verify_message}") from error
        except OSError as error:
            raise StandinError(f"cannot reach https://{self.host}:{self.port}: {error}") from error
        finally:
            connection.close()

    def expect(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        response = self.request(method, path, body)
        if response.status not in ok:
            raise StandinError(f"{method} {path} -> HTTP {response.status}: {response.body.decode()[:300]}")
        return response.json() if response.body else None


def read_pem(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StandinError(f"{path}: {error.strerror}") from error


def write_file(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def wait_until(ready: Callable[[], bool], what: str, seconds: float) -> None:
    """Poll ready() every 0.5 s (its StandinErrors count as not ready); raise after seconds."""
    deadline, last_error = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except StandinError as error:
            last_error = str(error)
        time.sleep(0.5)
    raise StandinError(f"timed out after {seconds:.0f}s waiting for {what}: {last_error}")


def systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise StandinError(f"systemctl {' '.join(args)}: {result.stderr.strip()}")


# --- HTTPS servers (the apiserver and etcd stand-ins) ----------------------------------------

class TLSServer(ThreadingHTTPServer):
    """Handshakes in the request's own thread, so a client that never speaks TLS blocks no one."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        tls = self.context.wrap_socket(request, server_side=True)
        self.RequestHandlerClass(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (haproxy's checks, clients that do not trust us) are normal here.
        pass


def server_context(cert_file: str, key_file: str, client_ca_file: str, *, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(client_ca_file)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


class JsonHandler(BaseHTTPRequestHandler):
    """Routes every method to route(method, path, query); replies with JSON or plain text."""

    def log_message(self, *args: Any) -> None:  # no per-request noise in the journal
        pass

    def reply(self, status: int, body: Any) -> None:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def route(self, method: str, path: str, query: dict[str, str]) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        try:
            self.route(self.command, url.path, query)
        except StandinError as error:
            self.reply(500, {"kind": "Status", "status": "Failure", "message": str(error)})

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch
