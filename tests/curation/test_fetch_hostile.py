"""Hostile servers and addresses against curation.fetch (issue 17): deadlines that hold, an
allow-list that matches only the address connected to, and proxies whose address is checked.

Every server listens on 127.0.0.1; 127.0.0.2 plays a forbidden host. Time bounds leave a wide
margin for loaded machines: each is far below what the unbounded behaviour takes.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from curation.fetch import Fetcher, FetchSettings, is_forbidden_address

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
DRIP_SECONDS = 12.0  # how long a drip server keeps going when nobody stops it


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class RawServer:
    """Accepts connections on ``host`` and hands each to ``behaviour(conn)`` in a thread."""

    def __init__(self, behaviour, host: str = "127.0.0.1"):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.behaviour = behaviour
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            conn.settimeout(DRIP_SECONDS)
            read_request(conn)
            self.behaviour(conn, self.stopped)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.stopped.set()
        self.sock.close()


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def drip(conn, stopped, payload: bytes, every: float = 0.2):
    end = time.monotonic() + DRIP_SECONDS
    for byte in payload:
        if stopped.is_set() or time.monotonic() > end:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)


def drip_headers(conn, stopped):
    drip(conn, stopped, b"HTTP/1.1 200 OK\r\n" + b"X-Drip: " + b"a" * 200 + b"\r\n\r\n")


def drip_body(conn, stopped):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n")
    drip(conn, stopped, b"b" * 1000)


def silent(conn, stopped):
    stopped.wait(DRIP_SECONDS)


@pytest.fixture
def server_factory():
    servers = []

    def make(behaviour, host="127.0.0.1"):
        servers.append(RawServer(behaviour, host))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def settings(**overrides) -> FetchSettings:
    base = dict(
        connect_timeout=1.0, read_timeout=5.0, retries=2, backoff=0.01,
        allow_networks=("127.0.0.1/32",), total_timeout=1.5,
    )
    return FetchSettings(**{**base, **overrides})


def timed_fetch(url: str, **overrides):
    with Fetcher(settings(**overrides)) as fetcher:
        start = time.monotonic()
        result = fetcher.fetch(url)
        return result, time.monotonic() - start


# --------------------------------------------------------------------------- deadlines


def test_headers_dripped_byte_by_byte_end_at_the_deadline(server_factory):
    server = server_factory(drip_headers)
    result, elapsed = timed_fetch(server.url())
    assert (result.ok, result.reason) == (False, "timeout")
    assert elapsed < 6.0  # the deadline is 1.5 s; unbounded, the drip goes on for 3 x 12 s
    assert result.attempts == 1  # the deadline is spent: no retry


def test_body_dripped_under_a_large_content_length_ends_at_the_deadline(server_factory):
    server = server_factory(drip_body)
    result, elapsed = timed_fetch(server.url())
    assert (result.ok, result.reason) == (False, "timeout")
    assert elapsed < 6.0
    assert server.accepted == 1


def test_retries_share_one_deadline(server_factory):
    server = server_factory(silent)
    result, elapsed = timed_fetch(server.url(), read_timeout=1.0, total_timeout=2.5, retries=5, backoff=0.0)
    assert (result.ok, result.reason) == (False, "timeout")
    assert elapsed < 5.0  # six attempts of 1 s each would take 6 s
    assert 2 <= server.accepted <= 4


def test_redirects_share_the_deadline(server_factory):
    hops = []

    def redirect_slowly(conn, stopped):
        hops.append(1)
        time.sleep(0.6)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")

    server = server_factory(redirect_slowly)
    result, elapsed = timed_fetch(server.url(), max_redirects=20, total_timeout=2.0)
    assert (result.ok, result.reason) == (False, "timeout")
    assert elapsed < 6.0
    assert len(hops) < 8  # unbounded, all 21 hops of 0.6 s are made


def test_a_body_trickled_forever_is_cut_at_total_timeout(server_factory):
    """One byte every 0.2 s with no end in sight (no Content-Length, no close): each read succeeds
    well within read_timeout, so only the total deadline can stop it, and it must, at the deadline."""
    hung_up = []

    def trickle_forever(conn, stopped):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n")
        watchdog = time.monotonic() + DRIP_SECONDS  # only so that a regressed fetcher fails instead of hanging
        try:
            while not stopped.is_set() and time.monotonic() < watchdog:
                conn.sendall(b"j")
                time.sleep(0.2)
        finally:
            hung_up.append(time.monotonic())

    server = server_factory(trickle_forever)
    total = 1.5
    with Fetcher(settings(total_timeout=total, read_timeout=5.0, retries=3, max_bytes=10_000_000)) as fetcher:
        start = time.monotonic()
        result = fetcher.fetch(server.url())
        elapsed = time.monotonic() - start
    assert (result.ok, result.reason, result.content) == (False, "timeout", None)
    assert f"total_timeout={total}" in result.detail
    assert total - 0.05 <= elapsed < total + 2.0  # cut at the cap: not before it, not long after
    assert (result.attempts, server.accepted) == (1, 1)  # the deadline is spent: no retry
    deadline = time.monotonic() + 5.0
    while not hung_up and time.monotonic() < deadline:  # the fetcher hung up: the server's send fails
        time.sleep(0.05)
    assert hung_up and hung_up[0] - start < total + 3.0


def test_a_fast_response_is_unaffected(server_factory):
    def answer(conn, stopped):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")

    server = server_factory(answer)
    result, _ = timed_fetch(server.url())
    assert (result.ok, result.content) == (True, b"hello")


# --------------------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(
    "ip", ["64:ff9b::7f00:1", "2002:7f00:1::", "2002:7f00:1::1", "2002:7f00:1:ffff::abcd"]
)
def test_allowing_an_ipv4_address_does_not_allow_its_nat64_or_6to4_forms(ip):
    assert is_forbidden_address(ip, ["127.0.0.1/32"])


def test_allow_list_matches_the_address_connected_to():
    assert not is_forbidden_address("127.0.0.1", ["127.0.0.1/32"])
    assert not is_forbidden_address("::ffff:127.0.0.1", ["127.0.0.1/32"])  # the same socket address
    assert not is_forbidden_address("64:ff9b::7f00:1", ["64:ff9b::7f00:1/128"])  # named as itself
    assert is_forbidden_address("64:ff9b::7f00:1", ["::ffff:127.0.0.1/128"])


def test_nat64_form_of_an_allowed_address_is_never_connected():
    calls = []

    def resolver(host):
        calls.append(host)
        return ["64:ff9b::7f00:1", "2002:7f00:1::1"]

    with Fetcher(settings(), resolver=resolver) as fetcher:
        result = fetcher.fetch("http://nat64.test/x")
    assert (result.ok, result.reason) == (False, "forbidden_address")
    assert calls == ["nat64.test"]


# --------------------------------------------------------------------------- proxies


@pytest.mark.parametrize("variable, scheme", [("HTTP_PROXY", "http"), ("HTTPS_PROXY", "https")])
def test_a_proxy_on_a_forbidden_address_is_never_connected(server_factory, monkeypatch, variable, scheme):
    tripwire = server_factory(silent, host="127.0.0.2")
    monkeypatch.setenv(variable, f"http://127.0.0.2:{tripwire.port}")
    with Fetcher(settings(), resolver=lambda host: ["127.0.0.1"]) as fetcher:
        result = fetcher.fetch(f"{scheme}://images.test/x")
    assert (result.ok, result.reason) == (False, "forbidden_address")
    assert "proxy" in result.detail
    time.sleep(0.2)
    assert tripwire.accepted == 0


def test_a_proxy_hostname_is_resolved_by_the_fetcher_and_checked(server_factory, monkeypatch):
    seen = []

    def proxy(conn, stopped):
        seen.append(1)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    server = server_factory(proxy)
    monkeypatch.setenv("HTTP_PROXY", f"http://proxy.test:{server.port}")
    table = {"proxy.test": ["127.0.0.1"], "images.test": ["127.0.0.1"]}
    with Fetcher(settings(), resolver=lambda host: table[host]) as fetcher:
        result = fetcher.fetch("http://images.test/x")
    assert (result.ok, result.content) == (True, b"ok")
    assert seen == [1]

    table["proxy.test"] = ["127.0.0.2"]
    with Fetcher(settings(), resolver=lambda host: table[host]) as fetcher:
        refused = fetcher.fetch("http://images.test/x")
    assert (refused.ok, refused.reason) == (False, "forbidden_address")
