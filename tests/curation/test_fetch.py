"""Tests of curation.fetch against real servers on 127.0.0.0/8.

127.0.0.1 plays the allowed public host (allow-listed as 127.0.0.1/32) and
127.0.0.2 the forbidden host: a bare listening socket there proves that no
connection was ever attempted. Nothing here connects outside 127.0.0.0/8.
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import ipaddress
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from curation.fetch import (
    FetchResult, Fetcher, FetchSettings, HostState, is_forbidden_address, retry_after_seconds, robots_opt_out,
)

LOOPBACK_ONLY = ("127.0.0.1/32",)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "request_method")


def settings(**overrides) -> FetchSettings:
    base = dict(
        connect_timeout=1.0, read_timeout=1.0, retries=2, backoff=0.01, allow_networks=LOOPBACK_ONLY
    )
    return FetchSettings(**{**base, **overrides})


def resolver_for(table: dict[str, list[str]]):
    return lambda host: table[host]


# --------------------------------------------------------------------------- servers


class OriginHandler(BaseHTTPRequestHandler):
    """Routes of the test origin; every request is counted by path."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain", **headers: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server: Origin = self.server
        path, _, query = self.path.partition("?")
        with server.lock:
            server.hits[path] += 1
            server.clients.add(self.client_address)
            server.times[path].append(time.monotonic())
            hits = server.hits[path]
        if path == "/ok":
            self.reply(200, PNG, "image/png")
        elif path == "/robots":  # /robots?<X-Robots-Tag values, "|"-separated>
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            for value in urllib.parse.unquote(query).split("|"):
                self.send_header("X-Robots-Tag", value)
            self.end_headers()
            self.wfile.write(PNG)
        elif path.startswith("/busy/"):  # /busy/<status>?<Retry-After>: that answer first, then the image
            retry_after = urllib.parse.unquote(query)
            self.reply(int(path.split("/")[2]), b"busy", Retry_After=retry_after) if hits == 1 else self.reply(200, PNG)
        elif path == "/echo":
            body = f"{self.headers['Host']}\n{self.headers['User-Agent']}\n{self.path}"
            self.reply(200, body.encode())
        elif path == "/missing":
            self.reply(404, b"not here")
        elif path == "/flaky":
            self.reply(503, b"busy") if hits <= 2 else self.reply(200, b"recovered")
        elif path == "/down":
            self.reply(503, b"busy")
        elif path == "/slow":
            time.sleep(0.6)
            self.reply(200, b"late")
        elif path == "/bytes":
            self.reply(200, b"x" * int(query))
        elif path == "/huge-declared":
            # Promises far more than the cap, sends a little, then stalls: a client that
            # does not reject on Content-Length waits for the read timeout instead.
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            time.sleep(1.5)
            self.close_connection = True
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            count, size = (int(n) for n in query.split(","))
            try:
                for _ in range(count):
                    self.wfile.write(b"%x\r\n%s\r\n" % (size, b"c" * size))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
        elif path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(b"e" * int(query))
            except OSError:
                pass
            self.close_connection = True
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self.reply(200, b"end")
            else:
                self.reply(302, Location=f"/redirect/{left - 1}")
        elif path.startswith("/hop/"):  # /hop/<status>/<left>: <left> redirects answered with <status>
            _, _, status, left = path.split("/")
            if int(left) == 0:
                self.reply(200, b"end")
            else:
                self.reply(int(status), b"moved", Location=f"/hop/{status}/{int(left) - 1}")
        elif path.startswith("/no-location/"):  # a redirect status with no Location header
            self.reply(int(path.rsplit("/", 1)[1]), b"moved, but not saying where")
        elif path.startswith("/empty-location/"):  # ... or with an empty one
            self.reply(int(path.rsplit("/", 1)[1]), b"moved, but not saying where", Location="")
        elif path == "/loop":
            self.reply(301, Location="/loop")
        elif path == "/to":
            self.reply(302, Location=urllib.parse.unquote(query))
        elif path.startswith("/to/"):  # /to/<status>?<location>
            self.reply(int(path.rsplit("/", 1)[1]), Location=urllib.parse.unquote(query))
        else:
            self.reply(500, b"no such route")


class Origin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        super().__init__((host, 0), OriginHandler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.times: defaultdict[str, list[float]] = defaultdict(list)
        self.clients: set[tuple[str, int]] = set()
        self.tls = tls
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        with self.tls.wrap_socket(request, server_side=True) as tls_request:
            super().finish_request(tls_request, client_address)

    def handle_error(self, request, client_address):
        pass  # clients that abort (byte cap, failed TLS) are expected here

    def stop(self):
        self.shutdown()
        self.server_close()


class Tripwire:
    """A bare listening socket that counts every TCP connection made to it."""

    def __init__(self, host: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()
        self.accepted = 0

    def url(self, path: str = "/ok") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def connections(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1


class ProxyHandler(BaseHTTPRequestHandler):
    """A forwarding proxy limited to 127.0.0.0/8: absolute-form GET and CONNECT."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002
        pass

    def upstream(self, host: str) -> str:
        ip = self.server.hosts.get(host, host)
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.0.0/8")
        return ip

    def do_GET(self):
        self.server.requests.append(f"GET {self.path}")
        target = urllib.parse.urlsplit(self.path)
        conn = http.client.HTTPConnection(self.upstream(target.hostname), target.port, timeout=5)
        hop_by_hop = ("proxy-connection", "connection")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
        conn.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
        response = conn.getresponse()
        body = response.read()
        self.send_response(response.status)
        for name in ("Content-Type", "Location"):
            if response.getheader(name):
                self.send_header(name, response.getheader(name))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        conn.close()

    def do_CONNECT(self):
        self.server.requests.append(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((self.upstream(host), int(port)), timeout=5)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        ends = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(ends, [], [], 5)
                if not readable:
                    break
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            self.close_connection = True


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hosts: dict[str, str]):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.hosts = hosts
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def handle_error(self, request, client_address):
        pass


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def origin():
    server = Origin()
    yield server
    server.stop()


@pytest.fixture
def forbidden_host():
    wire = Tripwire("127.0.0.2")
    yield wire
    wire.sock.close()


@pytest.fixture
def fetcher():
    with Fetcher(settings()) as f:
        yield f


@pytest.fixture
def proxy():
    server = Proxy({"images.test": "127.0.0.1"})
    yield server
    server.shutdown()
    server.server_close()


def certificate(subject: str, issuer: str, key, issuer_key, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = x509.CertificateBuilder(
        subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]),
        issuer_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]),
        public_key=key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=now - datetime.timedelta(days=1),
        not_valid_after=now + datetime.timedelta(days=2),
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a certificate for ``images.test`` signed by it, as PEM files."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("test CA", "test CA", ca_key, ca_key, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    ])
    cert = certificate("images.test", "test CA", key, ca_key, [
        (x509.SubjectAlternativeName([x509.DNSName("images.test")]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])
    pem = serialization.Encoding.PEM
    contents = {
        "ca": ca_cert.public_bytes(pem),
        "cert": cert.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }
    directory = tmp_path_factory.mktemp("tls")
    for name, data in contents.items():
        (directory / f"{name}.pem").write_bytes(data)
    return {name: str(directory / f"{name}.pem") for name in contents}


@pytest.fixture
def tls_origin(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = Origin(tls=context)
    server.server_names = server_names
    yield server
    server.stop()


# --------------------------------------------------------------------------- basic outcomes


def test_ok_fetch_returns_body_and_content_type(origin, fetcher):
    result = fetcher.fetch(origin.url("/ok"))
    assert result == FetchResult(
        url=origin.url("/ok"), final_url=origin.url("/ok"), ok=True, reason="ok", status=200,
        content=PNG, content_type="image/png", attempts=1,
    )


def test_404_is_not_retried(origin, fetcher):
    result = fetcher.fetch(origin.url("/missing"))
    assert (result.ok, result.reason, result.status, result.attempts) == (False, "http_404", 404, 1)
    assert result.content is None
    assert origin.hits["/missing"] == 1


def test_503_is_retried_until_success(origin, fetcher):
    result = fetcher.fetch(origin.url("/flaky"))
    assert (result.ok, result.reason, result.content, result.attempts) == (True, "ok", b"recovered", 3)
    assert origin.hits["/flaky"] == 3


def test_503_retries_stop_after_the_limit_with_exponential_backoff(origin):
    with Fetcher(settings(retries=2, backoff=0.1)) as fetcher:
        started = time.monotonic()
        result = fetcher.fetch(origin.url("/down"))
        elapsed = time.monotonic() - started
    assert (result.ok, result.reason, result.status, result.attempts) == (False, "http_503", 503, 3)
    assert origin.hits["/down"] == 3
    assert 0.3 <= elapsed < 1.5  # slept 0.1 then 0.2


def test_slow_response_times_out_and_is_retried(origin):
    with Fetcher(settings(read_timeout=0.2, retries=1)) as fetcher:
        result = fetcher.fetch(origin.url("/slow"))
    assert (result.ok, result.reason, result.attempts) == (False, "timeout", 2)
    assert origin.hits["/slow"] == 2


def test_refused_connection_is_a_retried_connection_error(fetcher):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = fetcher.fetch(f"http://127.0.0.1:{port}/ok")
    assert (result.ok, result.reason, result.attempts) == (False, "connection_error", 3)


def test_user_agent_and_host_header_are_sent(origin):
    with Fetcher(settings(user_agent="tester/9")) as fetcher:
        result = fetcher.fetch(origin.url("/echo?a=1#fragment"))
    assert result.content == f"127.0.0.1:{origin.port}\ntester/9\n/echo?a=1".encode()


# --------------------------------------------------------------------------- byte cap


def test_body_of_exactly_max_bytes_is_accepted(origin):
    with Fetcher(settings(max_bytes=5000)) as fetcher:
        result = fetcher.fetch(origin.url("/bytes?5000"))
    assert result.ok and result.content == b"x" * 5000


def test_content_length_above_the_cap_is_rejected_before_reading(origin):
    with Fetcher(settings(max_bytes=1000, read_timeout=1.0)) as fetcher:
        started = time.monotonic()
        result = fetcher.fetch(origin.url("/huge-declared"))
        elapsed = time.monotonic() - started
    assert (result.ok, result.reason, result.status, result.attempts) == (False, "too_large", 200, 1)
    assert result.content is None
    assert elapsed < 0.9  # did not wait on the stalled body


def test_chunked_body_above_the_cap_is_aborted(origin):
    with Fetcher(settings(max_bytes=10_000)) as fetcher:
        result = fetcher.fetch(origin.url("/chunked?200,1000"))
    assert (result.ok, result.reason, result.attempts) == (False, "too_large", 1)
    assert origin.hits["/chunked"] == 1


def test_chunked_body_under_the_cap_is_reassembled(origin):
    with Fetcher(settings(max_bytes=10_000)) as fetcher:
        result = fetcher.fetch(origin.url("/chunked?10,1000"))
    assert result.ok and result.content == b"c" * 10_000


def test_body_delimited_by_close_is_capped(origin):
    with Fetcher(settings(max_bytes=10_000)) as fetcher:
        small = fetcher.fetch(origin.url("/until-close?9000"))
        large = fetcher.fetch(origin.url("/until-close?500000"))
    assert small.ok and small.content == b"e" * 9000
    assert (large.ok, large.reason) == (False, "too_large")


def test_connection_is_reusable_after_an_aborted_body(origin):
    with Fetcher(settings(max_bytes=10_000)) as fetcher:
        assert fetcher.fetch(origin.url("/chunked?200,1000")).reason == "too_large"
        assert [fetcher.fetch(origin.url("/ok")).content for _ in range(3)] == [PNG] * 3


# --------------------------------------------------------------------------- redirects


def test_redirect_chain_is_followed(origin, fetcher):
    result = fetcher.fetch(origin.url("/redirect/3"))
    assert (result.ok, result.content, result.final_url) == (True, b"end", origin.url("/redirect/0"))
    assert [origin.hits[f"/redirect/{n}"] for n in range(4)] == [1, 1, 1, 1]


def test_too_many_redirects(origin):
    with Fetcher(settings(max_redirects=2)) as fetcher:
        chain = fetcher.fetch(origin.url("/redirect/3"))
        loop = fetcher.fetch(origin.url("/loop"))
    assert (chain.ok, chain.reason, chain.final_url) == (False, "too_many_redirects", origin.url("/redirect/0"))
    assert [origin.hits[f"/redirect/{n}"] for n in range(4)] == [0, 1, 1, 1]
    assert (loop.reason, origin.hits["/loop"]) == ("too_many_redirects", 3)


def test_redirect_to_a_forbidden_address_never_connects(origin, fetcher, forbidden_host):
    target = forbidden_host.url("/secret")
    result = fetcher.fetch(origin.url("/to?" + urllib.parse.quote(target, safe="")))
    assert (result.ok, result.reason, result.final_url) == (False, "forbidden_address", target)
    assert forbidden_host.connections() == 0


def test_redirect_to_another_scheme_is_an_invalid_url(origin, fetcher):
    result = fetcher.fetch(origin.url("/to?" + urllib.parse.quote("file:///etc/passwd", safe="")))
    assert (result.ok, result.reason, result.final_url) == (False, "invalid_url", "file:///etc/passwd")


def test_unparsable_redirect_location_is_an_invalid_url(origin, fetcher):
    result = fetcher.fetch(origin.url("/to?" + urllib.parse.quote("http://[broken/", safe="")))
    assert (result.ok, result.reason, result.status) == (False, "invalid_url", 302)
    assert "http://[broken/" in result.detail


REDIRECT_CODES = (301, 302, 303, 307, 308)


@pytest.mark.parametrize("status", REDIRECT_CODES)
def test_every_redirect_status_is_followed(origin, fetcher, status):
    result = fetcher.fetch(origin.url(f"/hop/{status}/2"))
    assert (result.ok, result.reason, result.content) == (True, "ok", b"end")
    assert result.final_url == origin.url(f"/hop/{status}/0")
    assert [origin.hits[f"/hop/{status}/{n}"] for n in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("status", REDIRECT_CODES)
def test_every_redirect_status_counts_against_max_redirects(origin, status):
    with Fetcher(settings(max_redirects=2)) as fetcher:
        within = fetcher.fetch(origin.url(f"/hop/{status}/2"))
        beyond = fetcher.fetch(origin.url(f"/hop/{status}/3"))
    assert (within.ok, within.content) == (True, b"end")
    assert (beyond.ok, beyond.reason, beyond.final_url) == (False, "too_many_redirects", origin.url(f"/hop/{status}/0"))
    assert origin.hits[f"/hop/{status}/3"] == 1 and origin.hits[f"/hop/{status}/0"] == 1  # only by `within`


@pytest.mark.parametrize("route", ["no-location", "empty-location"])
@pytest.mark.parametrize("status", REDIRECT_CODES)
def test_a_redirect_without_a_location_is_a_named_reject(origin, fetcher, route, status):
    result = fetcher.fetch(origin.url(f"/{route}/{status}"))
    assert (result.ok, result.reason, result.status, result.content) == (False, "redirect_without_location", status, None)
    assert (result.attempts, origin.hits[f"/{route}/{status}"]) == (1, 1)  # not retried
    assert "Location" in result.detail


# --------------------------------------------------------------------------- https -> http


def to(server: Origin, status: int, location: str, host: str = "images.test") -> str:
    return server.url(f"/to/{status}?" + urllib.parse.quote(location, safe=""), host=host)


@pytest.mark.parametrize("status", REDIRECT_CODES)
def test_an_https_to_http_redirect_is_refused_by_default(tls_origin, tls_files, status):
    wire = Tripwire("127.0.0.1")  # the http side: counts every TCP connection made to it
    table = {"images.test": ["127.0.0.1"]}
    plain = f"http://images.test:{wire.port}/ok"
    try:
        with Fetcher(settings(ca_certs=tls_files["ca"]), resolver=resolver_for(table)) as fetcher:
            result = fetcher.fetch(to(tls_origin, status, plain))
        assert wire.connections() == 0  # refused before connecting
    finally:
        wire.sock.close()
    assert FetchSettings().allow_https_downgrade is False
    assert (result.ok, result.reason, result.status, result.final_url) == (False, "insecure_redirect", status, plain)
    assert plain in result.detail and "allow_https_downgrade" in result.detail
    assert tls_origin.hits[f"/to/{status}"] == 1


def test_a_downgrade_later_in_the_chain_is_refused_too(tls_origin, tls_files, origin):
    table = {"images.test": ["127.0.0.1"]}
    plain = origin.url("/ok", host="images.test")
    via_https = to(tls_origin, 301, to(tls_origin, 302, plain))  # https -> https -> http
    with Fetcher(settings(ca_certs=tls_files["ca"]), resolver=resolver_for(table)) as fetcher:
        result = fetcher.fetch(origin.url("/to?" + urllib.parse.quote(via_https, safe="")))  # from http
    assert (result.ok, result.reason, result.final_url) == (False, "insecure_redirect", plain)
    assert (tls_origin.hits["/to/301"], tls_origin.hits["/to/302"], origin.hits["/ok"]) == (1, 1, 0)


def test_an_https_to_http_redirect_is_followed_when_allowed(tls_origin, tls_files, origin):
    table = {"images.test": ["127.0.0.1"]}
    plain = origin.url("/ok", host="images.test")
    allowed = settings(ca_certs=tls_files["ca"], allow_https_downgrade=True)
    with Fetcher(allowed, resolver=resolver_for(table)) as fetcher:
        result = fetcher.fetch(to(tls_origin, 302, plain))
    assert (result.ok, result.reason, result.content, result.final_url) == (True, "ok", PNG, plain)
    assert origin.hits["/ok"] == 1


def test_redirects_that_keep_or_gain_tls_are_followed(tls_origin, tls_files, origin):
    table = {"images.test": ["127.0.0.1"]}
    secure = tls_origin.url("/ok", host="images.test")
    with Fetcher(settings(ca_certs=tls_files["ca"]), resolver=resolver_for(table)) as fetcher:
        https_to_https = fetcher.fetch(to(tls_origin, 307, secure))
        http_to_https = fetcher.fetch(to(origin, 308, secure))
    assert (https_to_https.ok, https_to_https.content, https_to_https.final_url) == (True, PNG, secure)
    assert (http_to_https.ok, http_to_https.content, http_to_https.final_url) == (True, PNG, secure)


def test_allow_https_downgrade_is_a_config_key():
    from curation.config import load_config
    from pipelines.pairs import PairsConfig

    assert load_config(PairsConfig, text="fetch: {}\n").fetch.allow_https_downgrade is False
    assert load_config(PairsConfig, overrides=["fetch.allow_https_downgrade=true"]).fetch.allow_https_downgrade


# --------------------------------------------------------------------------- address checks


def test_default_settings_forbid_loopback_and_never_connect():
    wire = Tripwire("127.0.0.1")
    try:
        with Fetcher(FetchSettings(retries=0)) as fetcher:
            by_ip = fetcher.fetch(wire.url())
            by_name = fetcher.fetch(f"http://localhost:{wire.port}/ok")
            mapped = fetcher.fetch(f"http://[::ffff:127.0.0.1]:{wire.port}/ok")
        assert [r.reason for r in (by_ip, by_name, mapped)] == ["forbidden_address"] * 3
        assert wire.connections() == 0
    finally:
        wire.sock.close()


def test_hostname_resolving_to_a_forbidden_address_is_refused(fetcher, forbidden_host):
    with Fetcher(settings(), resolver=resolver_for({"evil.test": ["127.0.0.2"]})) as fetcher:
        result = fetcher.fetch(f"http://evil.test:{forbidden_host.port}/ok")
    assert (result.ok, result.reason) == (False, "forbidden_address")
    assert "127.0.0.2" in result.detail
    assert forbidden_host.connections() == 0


def test_allowed_hostname_connects_to_the_checked_ip_with_its_host_header(origin):
    with Fetcher(settings(), resolver=resolver_for({"images.test": ["127.0.0.1"]})) as fetcher:
        result = fetcher.fetch(f"http://IMAGES.test:{origin.port}/echo")
    assert result.ok
    assert result.content.split(b"\n")[0] == f"images.test:{origin.port}".encode()


def test_only_the_allowed_addresses_of_a_hostname_are_used(origin, forbidden_host):
    table = {"mixed.test": ["127.0.0.2", "127.0.0.1"]}
    with Fetcher(settings(), resolver=resolver_for(table)) as fetcher:
        result = fetcher.fetch(f"http://mixed.test:{origin.port}/ok")
    assert result.ok and result.content == PNG
    assert forbidden_host.connections() == 0


def test_hostname_is_resolved_once_per_hop_and_again_after_a_redirect(origin, forbidden_host):
    """A rebinding resolver: allowed on the first lookup, forbidden on every later one."""
    calls = []

    def rebinding(host: str) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["127.0.0.2"]

    with Fetcher(settings(), resolver=rebinding) as fetcher:
        retried = fetcher.fetch(f"http://rebind.test:{origin.port}/flaky")
        assert (retried.ok, retried.attempts, len(calls)) == (True, 3, 1)
        calls.clear()
        redirected = fetcher.fetch(f"http://rebind.test:{origin.port}/redirect/1")
    assert (redirected.reason, len(calls)) == ("forbidden_address", 2)
    assert origin.hits["/redirect/1"] == 1
    assert forbidden_host.connections() == 0


def raise_gaierror(host):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    ("resolver", "reason"),
    [
        (raise_gaierror, "dns_error"),
        (lambda host: [], "dns_error"),
        (lambda host: 1 / 0, "dns_error"),
        (lambda host: ["not-an-address"], "forbidden_address"),
    ],
)
def test_resolver_failures_are_typed(resolver, reason):
    with Fetcher(settings(), resolver=resolver) as fetcher:
        result = fetcher.fetch("http://nowhere.test/x")
    assert (result.ok, result.reason, result.attempts) == (False, reason, 1)


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.1.1", "127.0.0.1",
        "127.0.0.2", "0.0.0.0", "0.1.2.3", "169.254.0.1", "169.254.169.254", "169.254.170.2",
        "100.64.0.1", "100.100.100.200", "168.63.129.16", "192.0.0.192", "192.0.2.7", "198.18.0.1",
        "198.51.100.2", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fd00:ec2::254", "fec0::1",
        "ff02::1", "ff05::2", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
        "::ffff:192.168.0.1", "::127.0.0.1", "64:ff9b::a00:1", "64:ff9b:1::1", "2002:a00:1::1",
        "2002:7f00:1::", "2001::1", "2001:db8::1", "100::1",
        "not an ip", "", "1.2.3", "1.2.3.4.5", "08.8.8.8", "2130706433",
    ],
)
def test_forbidden_addresses(ip):
    assert is_forbidden_address(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.32.0.1",
        "192.169.0.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(ip):
    assert not is_forbidden_address(ip)


def test_allow_networks_override_the_deny_list():
    assert not is_forbidden_address("127.0.0.1", LOOPBACK_ONLY)
    assert is_forbidden_address("127.0.0.2", LOOPBACK_ONLY)
    assert not is_forbidden_address("::ffff:127.0.0.1", LOOPBACK_ONLY)
    assert not is_forbidden_address("10.1.2.3", ["10.0.0.0/8", "fd00::/8"])
    assert not is_forbidden_address("fd00::5", ["10.0.0.0/8", "fd00::/8"])
    assert is_forbidden_address("169.254.169.254", ["10.0.0.0/8"])
    with pytest.raises(ValueError):
        is_forbidden_address("10.0.0.1", ["10.0.0.0/33"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "http://", "https:///path",
        "garbage", "", "//example.com/x", "http://exa mple.com/", "http://example.com:99999/",
        "http://example.com:0/", "http://[::1/", "http://a%00b/",
    ],
)
def test_invalid_urls_are_typed_failures(url):
    with Fetcher(settings(), resolver=lambda host: pytest.fail(f"resolved {host}")) as fetcher:
        result = fetcher.fetch(url)
    assert (result.ok, result.reason, result.url) == (False, "invalid_url", url)


def test_non_string_url_does_not_raise():
    with Fetcher(settings()) as fetcher:
        result = fetcher.fetch(None)  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "invalid_url")


# --------------------------------------------------------------------------- proxies


def test_http_proxy_receives_the_absolute_form_request(origin, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    with Fetcher(settings(), resolver=resolver_for({"images.test": ["127.0.0.1"]})) as fetcher:
        result = fetcher.fetch(f"http://images.test:{origin.port}/echo?q=1")
    assert result.ok
    assert proxy.requests == [f"GET http://images.test:{origin.port}/echo?q=1"]
    assert result.content.split(b"\n")[0] == f"images.test:{origin.port}".encode()
    assert origin.hits["/echo"] == 1


def test_proxied_target_is_still_checked_locally(proxy, forbidden_host, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    with Fetcher(settings(), resolver=resolver_for({"evil.test": ["127.0.0.2"]})) as fetcher:
        by_name = fetcher.fetch(f"http://evil.test:{forbidden_host.port}/ok")
        by_ip = fetcher.fetch(forbidden_host.url())
    assert (by_name.reason, by_ip.reason) == ("forbidden_address", "forbidden_address")
    assert proxy.requests == []
    assert forbidden_host.connections() == 0


def test_no_proxy_bypasses_the_proxy(origin, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "other.test,images.test")
    with Fetcher(settings(), resolver=resolver_for({"images.test": ["127.0.0.1"]})) as fetcher:
        result = fetcher.fetch(f"http://images.test:{origin.port}/ok")
    assert result.ok and result.content == PNG
    assert proxy.requests == []


def test_unsupported_proxy_scheme_is_rejected_at_construction(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="proxy"):
        Fetcher(settings())


# --------------------------------------------------------------------------- TLS


def test_https_uses_sni_and_verifies_the_hostname_on_the_checked_ip(tls_origin, tls_files):
    table = {"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    with Fetcher(settings(ca_certs=tls_files["ca"]), resolver=resolver_for(table)) as fetcher:
        good = fetcher.fetch(f"https://images.test:{tls_origin.port}/echo")
        wrong_name = fetcher.fetch(f"https://other.test:{tls_origin.port}/echo")
    assert good.ok
    assert good.content.split(b"\n")[0] == f"images.test:{tls_origin.port}".encode()
    assert (wrong_name.ok, wrong_name.reason, wrong_name.attempts) == (False, "connection_error", 1)
    assert "certificate" in wrong_name.detail.lower()
    assert tls_origin.server_names[:2] == ["images.test", "other.test"]
    assert tls_origin.hits["/echo"] == 1


def test_https_with_an_untrusted_ca_fails(tls_origin):
    with Fetcher(settings(), resolver=resolver_for({"images.test": ["127.0.0.1"]})) as fetcher:
        result = fetcher.fetch(f"https://images.test:{tls_origin.port}/ok")
    assert (result.ok, result.reason, result.attempts) == (False, "connection_error", 1)
    assert tls_origin.hits["/ok"] == 0


def test_https_proxy_tunnel_connects_to_the_checked_ip(tls_origin, tls_files, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    table = {"images.test": ["127.0.0.1"]}
    with Fetcher(settings(ca_certs=tls_files["ca"]), resolver=resolver_for(table)) as fetcher:
        result = fetcher.fetch(f"https://images.test:{tls_origin.port}/echo")
    assert result.ok
    assert proxy.requests == [f"CONNECT 127.0.0.1:{tls_origin.port}"]
    assert tls_origin.server_names == ["images.test"]
    assert result.content.split(b"\n")[0] == f"images.test:{tls_origin.port}".encode()


# --------------------------------------------------------------------------- concurrency


def test_fetch_many_preserves_input_order(origin, fetcher):
    urls = [origin.url(f"/echo?i={i}") for i in range(40)]
    urls[7] = origin.url("/missing")
    urls[13] = "not a url"
    results = fetcher.fetch_many(urls, concurrency=8)
    assert [r.url for r in results] == urls
    assert results[7].reason == "http_404" and results[13].reason == "invalid_url"
    for i, result in enumerate(results):
        if i not in (7, 13):
            assert result.content.endswith(f"/echo?i={i}".encode())
    assert fetcher.fetch_many([], concurrency=4) == []


def test_connections_are_kept_alive_and_reused(origin, fetcher):
    for _ in range(20):
        assert fetcher.fetch(origin.url("/ok")).ok
    assert len(origin.clients) == 1
    results = fetcher.fetch_many([origin.url(f"/echo?{i}") for i in range(200)], concurrency=4)
    assert all(r.ok for r in results)
    assert len(origin.clients) <= 5


# --------------------------------------------------------------------------- creators' opt-outs


@pytest.mark.parametrize(
    ("values", "found"),
    [
        (["noai"], "noai"),
        (["NoImageAI"], "noimageai"),
        (["noindex, nofollow", "noarchive,  NOAI "], "noai"),
        (["otherbot: noai"], None),  # addressed to another agent
        (["curation-fetcher: noimageai"], "noimageai"),
        (["Curation-Fetcher : noai, noindex"], "noai"),
        (["unavailable_after: 25 Jun 2010 15:00:00 PST"], None),
        (["noindex", "nofollow"], None),
        ([], None),
    ],
)
def test_robots_directives_are_read_as_img2dataset_reads_them(values, found):
    assert robots_opt_out(values, "curation-fetcher", {"noai", "noimageai"}) == found


@pytest.mark.parametrize("header", ["noai", "noindex, NoImageAI", "nofollow|curation-fetcher: noai"])
def test_an_opted_out_response_is_dropped_before_its_body(origin, fetcher, header):
    result = fetcher.fetch(origin.url("/robots?" + urllib.parse.quote(header)))
    assert (result.ok, result.reason, result.status, result.content) == (False, "opted_out", 200, None)
    assert "X-Robots-Tag" in result.detail and result.attempts == 1


def test_opt_outs_for_other_agents_or_other_directives_are_fetched(origin, fetcher):
    for header in ("otherbot: noai", "noindex, nofollow"):
        assert fetcher.fetch(origin.url("/robots?" + urllib.parse.quote(header))).content == PNG, header


def test_the_disallowed_directives_are_configurable(origin):
    url = origin.url("/robots?noml")
    with Fetcher(settings()) as fetcher:
        assert fetcher.fetch(url).ok, "noml is not disallowed by default"
    with Fetcher(settings(disallowed_robots_directives=("NoML",))) as fetcher:
        assert fetcher.fetch(url).reason == "opted_out"
    with Fetcher(settings(disallowed_robots_directives=())) as fetcher:
        assert fetcher.fetch(origin.url("/robots?noai")).ok, "opt-outs switched off"


def test_the_image_server_opt_out_route_is_a_judged_fetch_reject():
    from curation.image_download import ImageDownloader
    from curation.images import ImageSettings
    from curation.readers import pair_from_row
    from sampledata.pairs import ImageServer

    with ImageServer() as server:
        downloader = ImageDownloader(settings(), ImageSettings())
        downloader.setup()
        try:
            rows = [{"URL": f"{server.base_url}/{prefix}/3-320x240.jpg", "TEXT": "a red kite"}
                    for prefix in ("img", "opted-out")]
            kept, opted_out = (downloader(pair_from_row(row, "test.parquet")) for row in rows)
        finally:
            downloader.teardown()
    assert kept.image is not None and kept.image.width == 320
    assert (opted_out.step, opted_out.reason, opted_out.dead_letter) == ("fetch", "opted_out", False)
    assert "noai" in opted_out.detail


# --------------------------------------------------------------------------- per-host state


def test_a_name_that_does_not_resolve_costs_one_lookup_for_all_its_urls():
    lookups = Counter()

    def resolver(host: str) -> list[str]:
        lookups[host] += 1
        time.sleep(0.05)  # concurrent fetches of the name arrive while the first lookup runs
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    urls = [f"http://dead.invalid/{i}.jpg" for i in range(20)] + [f"http://gone.invalid/{i}.jpg" for i in range(5)]
    with Fetcher(settings(), resolver=resolver) as fetcher:
        results = fetcher.fetch_many(urls, concurrency=8)
        again = fetcher.fetch("http://dead.invalid/later.jpg")
    assert lookups == {"dead.invalid": 1, "gone.invalid": 1}
    assert {(r.ok, r.reason) for r in [*results, again]} == {(False, "dns_error")}, "each URL names its reason"
    assert "not looked up again" in again.detail


def test_a_failed_name_is_looked_up_again_after_host_skip_seconds():
    lookups = []

    def resolver(host: str) -> list[str]:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with Fetcher(settings(host_skip_seconds=0.2), resolver=resolver) as fetcher:
        fetcher.fetch("http://dead.invalid/1.jpg")
        fetcher.fetch("http://dead.invalid/2.jpg")
        time.sleep(0.25)
        fetcher.fetch("http://dead.invalid/3.jpg")
    assert lookups == ["dead.invalid", "dead.invalid"]


def test_a_host_that_keeps_timing_out_is_skipped_and_a_healthy_one_is_not(origin):
    silent = Tripwire("127.0.0.1")  # accepts connections into its backlog and never answers
    try:
        table = {"silent.test": ["127.0.0.1"], "images.test": ["127.0.0.1"]}
        quick = settings(read_timeout=0.2, retries=1, host_failure_limit=2)
        with Fetcher(quick, resolver=resolver_for(table)) as fetcher:
            started = time.monotonic()
            results = [fetcher.fetch(f"http://silent.test:{silent.port}/{i}.jpg") for i in range(6)]
            elapsed = time.monotonic() - started
            healthy = fetcher.fetch(f"http://images.test:{origin.port}/ok")
        assert [r.reason for r in results] == ["timeout"] * 6, "each URL still names its reason"
        assert [r.attempts for r in results] == [2, 2, 0, 0, 0, 0]
        assert "skipped" in results[-1].detail
        assert silent.connections() <= 4 and elapsed < 1.5, "two fetches of two attempts, then none"
        assert healthy.ok
    finally:
        silent.sock.close()


def test_an_answer_clears_a_host_s_failures(origin):
    with Fetcher(settings(read_timeout=0.2, retries=0, host_failure_limit=2)) as fetcher:
        reasons = [fetcher.fetch(origin.url(path)).reason for path in ("/slow", "/ok", "/slow", "/ok")]
    assert reasons == ["timeout", "ok", "timeout", "ok"]


def test_connections_per_host_are_capped_across_threads(origin):
    with Fetcher(settings(max_connections_per_host=2, read_timeout=2.0)) as fetcher:
        started = time.monotonic()
        results = fetcher.fetch_many([origin.url("/slow")] * 6, concurrency=6)
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert elapsed >= 3 * 0.6 - 0.05, "six 0.6 s requests, two at a time"
    starts = sorted(origin.times["/slow"])
    assert all(later - earlier >= 0.5 for earlier, later in zip(starts, starts[2:])), "never three at once"


def test_a_freed_slot_passes_on_from_a_woken_thread_whose_deadline_has_passed():
    """A freed slot wakes one waiting thread; one that can no longer use it (its deadline has
    passed) wakes the next, which would otherwise sleep until its own deadline."""
    now, waiting = [0.0], {"late": threading.Event(), "patient": threading.Event()}

    def clock() -> float:  # a thread's call is its last step under the lock before it waits
        name = threading.current_thread().name
        if name in waiting:
            waiting[name].set()
        return now[0]

    hosts, key, entered = HostState(settings(max_connections_per_host=1), clock), ("img.example", 443), {}
    assert hosts.enter(key, deadline=1000.0)
    threads = {name: threading.Thread(target=lambda n=name, d=deadline: entered.update({n: hosts.enter(key, d)}),
                                      name=name, daemon=True) for name, deadline in (("late", 10.0), ("patient", 1000.0))}
    for name in ("late", "patient"):  # late waits first, so it is the one the freed slot wakes
        threads[name].start()
        assert waiting[name].wait(5)
    now[0] = 20.0  # past late's deadline
    hosts.leave(key)
    for thread in threads.values():
        thread.join(5)
    assert entered == {"late": False, "patient": True}


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(origin, status):
    with Fetcher(settings(backoff=0.01)) as fetcher:
        result = fetcher.fetch(origin.url(f"/busy/{status}?1"))
    assert (result.ok, result.attempts) == (True, 2)
    first, second = origin.times[f"/busy/{status}"]
    assert 0.95 <= second - first < 1.5, "waited the server's second, not the 0.01 s backoff"


def test_retry_after_as_an_http_date_is_capped_by_max_retry_after(origin):
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    with Fetcher(settings(max_retry_after=0.3)) as fetcher:
        result = fetcher.fetch(origin.url("/busy/429?" + urllib.parse.quote(later)))
    assert result.ok
    first, second = origin.times["/busy/429"]
    assert 0.25 <= second - first < 1.0


def test_retry_after_holds_off_the_host_s_other_requests(origin):
    with Fetcher(settings(retries=0)) as fetcher:
        busy = fetcher.fetch(origin.url("/busy/503?1"))
        assert (busy.reason, busy.attempts) == ("http_503", 1)
        assert fetcher.fetch(origin.url("/ok")).ok
    assert origin.times["/ok"][0] - origin.times["/busy/503"][0] >= 0.95


def test_retry_after_values():
    now = time.time()
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None
