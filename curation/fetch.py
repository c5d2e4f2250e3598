"""A safe HTTP(S) fetcher for untrusted URLs.

Every hostname is resolved once, each address is checked against a deny list
(private, loopback, link-local, multicast, reserved, unspecified and cloud
metadata addresses, IPv4 and IPv6), and the connection goes to exactly the
address that was checked: no second DNS lookup, so DNS rebinding cannot slip a
forbidden address in. The ``Host`` header and, for HTTPS, SNI and certificate
verification use the hostname. Redirects are followed by hand and every hop is
checked again. A redirect from ``https`` to ``http`` is refused (``insecure_redirect``)
unless ``allow_https_downgrade`` is set, and a redirect status without a ``Location``
is a reject of its own (``redirect_without_location``).

Connections are kept alive in pools keyed by ``(scheme, ip, port, hostname)``
and the fetcher is safe to share between threads. :meth:`Fetcher.fetch` never
raises: every outcome is a :class:`FetchResult` with a ``reason``.

One deadline, ``total_timeout``, holds for a whole fetch: every attempt, retry,
backoff and redirect of one URL, from the connect to the last body byte. Before
every read from the socket (the status line and headers included) its timeout is
set to what is left, so a server dripping bytes is cut off at the deadline.

Creators' opt-outs are honoured as img2dataset honours them: a response whose
``X-Robots-Tag`` carries a disallowed directive (``noai``, ``noimageai`` by default),
for every agent or for this fetcher's (``curation-fetcher: noai``), ends as
``opted_out`` before its body is read.

A fetcher's threads share what they learn about hosts (:class:`HostState`): a name that
did not resolve is not looked up again for ``host_skip_seconds`` (concurrent lookups of
one name are one lookup), a host whose last ``host_failure_limit`` fetches all ended in
``timeout`` or ``connection_error`` is skipped as long, each URL failing at once with that
reason; at most ``max_connections_per_host`` requests are in flight to a host, and a
``Retry-After`` on a 429 or 503 (seconds or an HTTP date, at most ``max_retry_after``)
is waited out, by the retry and by the host's other requests.

Proxies come from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (read when the
fetcher is built). The proxy's own hostname is resolved and its address checked
like any other (allow-list a proxy on a private network), and connections go to
that checked address. The target is still resolved and checked locally; HTTPS
goes through a ``CONNECT`` tunnel to the checked address. Plain HTTP goes to the
proxy in absolute form, so the proxy resolves the hostname again: the proxy is
trusted to apply its own egress policy, and this is the only path on which the
address connected to is not the one the fetcher checked.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Collection, Sequence, Union

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, LocationParseError
from urllib3.util import Url, parse_url

from curation.http_client import EnvironmentProxies, classify_error, proxy_headers, with_retries

Resolver = Callable[[str], list[str]]
_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
HOST_FAILURES = frozenset({"timeout", "connection_error"})  # outcomes that count against a host
OPTED_OUT = "opted_out"  # the reason of a response whose X-Robots-Tag opts it out

_CHUNK_BYTES = 64 * 1024
_DISCARD_LIMIT_BYTES = 64 * 1024  # body of a redirect or error read to keep the connection
_MAX_POOLS = 256  # least recently used pools beyond this are closed
_POOL_MAXSIZE = 128  # idle keep-alive connections kept per pool
_HOSTNAME = re.compile(r"^[a-z0-9_.-]+$")
_MAX_HOSTS = 100_000  # hosts remembered per fetcher (skipped names, failure counts); oldest forgotten first

_DENIED_NETWORKS: tuple[_Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (holds Alibaba's 100.100.100.200)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (holds 169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (holds 192.0.0.192)
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (holds Teredo 2001::/32)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local (holds AWS's fd00:ec2::254)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(ip)
    for ip in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchSettings:
    """Limits and identity of a :class:`Fetcher`.

    Attributes:
        connect_timeout: Seconds to establish a TCP (and TLS) connection.
        read_timeout: Seconds to wait for each read from the socket.
        max_bytes: Largest body accepted; larger ones fail with ``too_large``.
        max_redirects: Redirects followed before ``too_many_redirects``.
        retries: Extra attempts after the first, on timeouts, connection errors
            and 5xx responses only.
        backoff: Seconds slept before the first retry, doubled for each next one.
        user_agent: ``User-Agent`` header sent with every request.
        allow_networks: CIDRs allowed even when the deny list forbids them
            (tests, intranets). They match the address connected to (an
            IPv4-mapped ``::ffff:a.b.c.d`` is that IPv4 address), never the IPv4
            address a NAT64 or 6to4 address is translated to.
        total_timeout: Seconds one fetch may take, all attempts, backoffs and
            redirects together, from the first connect to the last body byte
            (headers included), so a server trickling bytes cannot hold a worker
            past it. Ends as ``timeout``, which is not retried.
        ca_certs: PEM bundle of trusted CAs for HTTPS; ``None`` uses certifi's.
        allow_https_downgrade: Follow a redirect from an ``https`` URL to an
            ``http`` one. Off by default: such a hop ends as ``insecure_redirect``
            before anything connects to the ``http`` URL.
        disallowed_robots_directives: ``X-Robots-Tag`` directives (case-insensitive)
            that end a fetch as ``opted_out``: given for every agent, or for this
            fetcher's agent (the ``user_agent`` up to its first ``/``). Empty: none.
        max_connections_per_host: Requests in flight to one host at a time, over all
            threads (0: no cap).
        host_failure_limit: Fetches in a row ending in ``timeout`` or
            ``connection_error`` after which a host is skipped (0: never skipped).
        host_skip_seconds: How long a skipped host, or a name that did not resolve,
            fails at once without a connection or a lookup.
        max_retry_after: Longest ``Retry-After`` wait (seconds) honoured on a 429 or 503;
            a longer one is cut to it.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5
    user_agent: str = "curation-fetcher/0.1 (+https://github.com/; data curation research)"
    allow_networks: tuple[str, ...] = ()
    total_timeout: float = 60.0
    ca_certs: str | None = None
    allow_https_downgrade: bool = False
    disallowed_robots_directives: tuple[str, ...] = ("noai", "noimageai")
    max_connections_per_host: int = 16
    host_failure_limit: int = 3
    host_skip_seconds: float = 300.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        for name in ("max_redirects", "retries", "max_connections_per_host", "host_failure_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("backoff", "host_skip_seconds", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for network in self.allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as error:
                raise ValueError(f"allow_networks entry {network!r} is not a network: {error}") from None


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one :meth:`Fetcher.fetch`.

    ``reason`` is ``"ok"`` or one of ``invalid_url``, ``forbidden_address``,
    ``dns_error``, ``connection_error``, ``timeout``, ``too_large``,
    ``too_many_redirects``, ``insecure_redirect`` (an ``https`` URL redirected to
    ``http``), ``redirect_without_location`` (a 301, 302, 303, 307 or 308 with no
    ``Location``), ``opted_out`` (a disallowed ``X-Robots-Tag`` directive) and
    ``http_<status>``. A URL of a skipped host or name fails with the reason that got
    it skipped (``dns_error``, ``timeout``, ``connection_error``), its ``detail`` saying so. ``attempts`` counts the tries
    of the request that produced the outcome (the last hop of a redirect chain).
    """

    url: str
    final_url: str
    ok: bool
    reason: str
    status: int | None = None
    content: bytes | None = None
    content_type: str | None = None
    attempts: int = 1
    detail: str = ""


def is_forbidden_address(ip: str, allow_networks: Sequence[str] = ()) -> bool:
    """Tells whether a fetcher must refuse to connect to ``ip``.

    The deny list judges an IPv4-mapped (``::ffff:a.b.c.d``) or NAT64
    (``64:ff9b::/96``) address by the IPv4 address it carries; a 6to4 address
    must pass both as itself and as its IPv4 address. ``allow_networks`` match
    only the address connected to (an IPv4-mapped address is its IPv4 address):
    allowing ``127.0.0.1/32`` does not allow ``64:ff9b::7f00:1`` or
    ``2002:7f00:1::``. Anything that does not parse is forbidden.

    Args:
        ip: An IPv4 or IPv6 address in text form (an IPv6 scope id is allowed).
        allow_networks: CIDRs that are allowed even if otherwise forbidden.

    Raises:
        ValueError: If an entry of ``allow_networks`` is not a valid CIDR.
    """
    return _is_forbidden(ip, _parse_networks(allow_networks))


def resolve_host(hostname: str) -> list[str]:
    """The default resolver: the system's addresses for ``hostname``, in order."""
    infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def robots_opt_out(values: Sequence[str], agent: str, disallowed: Collection[str]) -> str | None:
    """The first disallowed directive among ``X-Robots-Tag`` header values that applies to ``agent``.

    As img2dataset reads them: a value is comma-separated directives, optionally prefixed
    by a user agent and a colon (``otherbot: noai`` applies to ``otherbot`` only); case
    does not matter.

    Args:
        values: every ``X-Robots-Tag`` header value of a response.
        agent: this fetcher's agent token, lower case.
        disallowed: directives that opt a response out, lower case.
    """
    for value in values:
        prefix, colon, rest = value.partition(":")
        if colon and prefix.strip().lower() != agent:
            continue
        for directive in (rest if colon else value).split(","):
            if directive.strip().lower() in disallowed:
                return directive.strip().lower()
    return None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value (delay seconds or an HTTP date) as seconds from ``now``
    (a :func:`time.time` value), at least 0; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _parse_networks(cidrs: Sequence[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _views(addr: _Address) -> list[_Address]:
    """The addresses a packet to ``addr`` may really reach."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return [addr.ipv4_mapped]
        if addr in _NAT64:
            return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
        if addr.sixtofour is not None:
            return [addr, addr.sixtofour]
    return [addr]


def _is_denied(addr: _Address) -> bool:
    if addr in _METADATA_ADDRESSES:
        return True
    if any(addr.version == net.version and addr in net for net in _DENIED_NETWORKS):
        return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def _connected(addr: _Address) -> _Address:
    """The address a socket to ``addr`` connects to: an IPv4-mapped address is its IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _is_forbidden(ip: str, allowed: Sequence[_Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    connected = _connected(addr)
    if any(connected.version == net.version and connected in net for net in allowed):
        return False
    return any(_is_denied(view) for view in _views(addr))


_deadline = threading.local()  # the deadline and read timeout of this thread's current attempt


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with its timeout set, before every read, to what is left of the deadline.

    Reads through the socket's own unbuffered ``makefile``, which keeps the socket
    open while the response is read (http.client closes its side early when the
    body is delimited by the connection's close).
    """

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float):
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._read_timeout = read_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("total_timeout reached while reading the response")
        timeout = min(self._read_timeout, left)
        if self._sock.gettimeout() != timeout:  # setting it is a system call, and lets other threads run
            self._sock.settimeout(timeout)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _SocketShim:
    """What :class:`http.client.HTTPResponse` needs of a socket: ``makefile('rb')``, deadline-bound."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        deadline = getattr(_deadline, "value", None)
        if deadline is None:  # not inside an attempt of a Fetcher: plain reads
            return self._sock.makefile(mode)
        # a buffer as large as a body chunk: the status line, the headers and a small body
        # come in one read from the socket
        return io.BufferedReader(_DeadlineReader(self._sock, deadline, _deadline.read_timeout), _CHUNK_BYTES)


class _DeadlineResponse(http.client.HTTPResponse):
    """A response (or a proxy's ``CONNECT`` answer) whose every read honours the attempt's deadline."""

    def __init__(self, sock: socket.socket, *args, **kwargs):
        super().__init__(_SocketShim(sock), *args, **kwargs)


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


@dataclass(frozen=True)
class _Target:
    """A parsed, validated http(s) URL."""

    scheme: str
    host: str  # lower case, IDNA encoded, without IPv6 brackets
    port: int
    request_uri: str
    is_ip: bool

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"

    @property
    def absolute_url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.request_uri}"


def _parse_target(url: str) -> _Target | str:
    """Parses ``url``; returns a :class:`_Target` or the reason it is invalid."""
    try:
        parsed = parse_url(url.strip())
    except (LocationParseError, ValueError, TypeError, AttributeError) as exc:
        return f"unparsable URL: {exc}"
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        return f"unsupported scheme {parsed.scheme!r}"
    host = (parsed.host or "").strip("[]").lower()
    if not host:
        return "URL has no host"
    is_ip = _is_ip_literal(host)
    if not is_ip and not _HOSTNAME.match(host):
        return f"invalid hostname {host!r}"
    port = parsed.port if parsed.port is not None else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        return f"invalid port {port}"
    return _Target(scheme, host, port, parsed.request_uri, is_ip)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Outcome:
    """What one request attempt gave; ``retry_after``: seconds the server asked to wait."""

    reason: str
    status: int | None = None
    content: bytes | None = None
    content_type: str | None = None
    location: str | None = None
    retryable: bool = False
    detail: str = ""
    retry_after: float | None = None


class _Lookup:
    """A name lookup in flight, whose result the threads asking for the same name share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[str] | _Outcome = []


class _Waiting:
    """The threads waiting to enter one host, on a condition of their :class:`HostState`'s lock."""

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.threads = 0


HostKey = tuple[str, int]


class HostState:
    """What a fetcher's threads know about hosts: names that did not resolve, hosts that keep
    failing, requests in flight per host and when a host asked to be left alone until.

    Args:
        settings: ``max_connections_per_host``, ``host_failure_limit``, ``host_skip_seconds``.
        clock: :func:`time.monotonic` or a stand-in.
    """

    def __init__(self, settings: FetchSettings, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[HostKey, _Waiting] = {}
        self._lookups: dict[str, _Lookup] = {}
        self._unresolved: OrderedDict[str, tuple[float, _Outcome]] = OrderedDict()
        self._failures: OrderedDict[HostKey, int] = OrderedDict()
        self._skipped: OrderedDict[HostKey, tuple[float, _Outcome]] = OrderedDict()
        self._active: dict[HostKey, int] = {}
        self._not_before: dict[HostKey, float] = {}

    def resolve(self, host: str, lookup: Callable[[str], list[str] | _Outcome]) -> list[str] | _Outcome:
        """``lookup(host)``, unless the name failed within ``host_skip_seconds`` (that failure
        again) or another thread is looking it up now (its result)."""
        with self._lock:
            failed = _unexpired(self._unresolved, host, self._clock())
            if failed is not None:
                return failed
            pending = self._lookups.get(host)
            mine = pending is None
            if mine:
                pending = self._lookups[host] = _Lookup()
        if not mine:
            pending.done.wait()
            return pending.result
        try:
            pending.result = lookup(host)
        finally:
            with self._lock:
                del self._lookups[host]
                if isinstance(pending.result, _Outcome) and self._settings.host_skip_seconds > 0:
                    skipped = _Outcome(pending.result.reason, detail=f"{pending.result.detail} (name not looked up "
                                       f"again for {self._settings.host_skip_seconds:g}s)")
                    _remember(self._unresolved, host, (self._clock() + self._settings.host_skip_seconds, skipped))
            pending.done.set()
        return pending.result

    def skipped(self, key: HostKey) -> _Outcome | None:
        """Why ``key`` is skipped now, or None."""
        with self._lock:
            return _unexpired(self._skipped, key, self._clock())

    def record(self, key: HostKey, outcome: _Outcome) -> None:
        """Counts a fetch's outcome: any HTTP answer clears the host's failures; the
        ``host_failure_limit``-th ``timeout`` or ``connection_error`` in a row skips it."""
        limit = self._settings.host_failure_limit
        with self._lock:
            if outcome.status is not None:
                self._failures.pop(key, None)
            elif outcome.reason in HOST_FAILURES and limit and _unexpired(self._skipped, key, self._clock()) is None:
                count = self._failures.pop(key, 0) + 1
                _remember(self._failures, key, count)
                if count >= limit:
                    detail = (f"{key[0]}:{key[1]} skipped for {self._settings.host_skip_seconds:g}s: its last {count} "
                              f"fetches ended in {outcome.reason} ({outcome.detail})")
                    _remember(self._skipped, key, (self._clock() + self._settings.host_skip_seconds,
                                                    _Outcome(outcome.reason, detail=detail)))

    def hold_off(self, key: HostKey, seconds: float) -> None:
        """No new request goes to ``key`` for ``seconds`` (the host's ``Retry-After``)."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._not_before.get(key, 0.0):
                self._not_before[key] = until

    def enter(self, key: HostKey, deadline: float) -> bool:
        """Waits for the host's ``Retry-After`` to pass and for a free connection slot, then
        takes the slot; False when ``deadline`` came first."""
        cap = self._settings.max_connections_per_host
        with self._lock:
            while True:
                now = self._clock()
                if now >= deadline:
                    if not cap or self._active.get(key, 0) < cap:
                        self._wake_one(key)  # the free slot this thread may have been woken for
                    return False
                wait_until = self._not_before.get(key, 0.0)
                if wait_until <= now:
                    self._not_before.pop(key, None)
                    if not cap or self._active.get(key, 0) < cap:
                        self._active[key] = self._active.get(key, 0) + 1
                        return True
                    wait_until = deadline
                self._wait(key, min(wait_until, deadline) - now)

    def leave(self, key: HostKey) -> None:
        """Gives back the slot :meth:`enter` took, waking one thread waiting for the host."""
        with self._lock:
            left = self._active[key] - 1
            if left:
                self._active[key] = left
            else:
                del self._active[key]
            self._wake_one(key)

    def _wait(self, key: HostKey, seconds: float) -> None:
        """Waits (holding the lock) until woken for ``key`` or ``seconds`` have passed."""
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = _Waiting(self._lock)
        waiting.threads += 1
        try:
            waiting.condition.wait(seconds)
        finally:
            waiting.threads -= 1
            if not waiting.threads:
                del self._waiting[key]

    def _wake_one(self, key: HostKey) -> None:
        """Wakes one thread waiting for ``key`` (holding the lock): one freed slot, one waiter,
        not every thread of every host."""
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.condition.notify()


def _unexpired(table: OrderedDict, key, now: float) -> _Outcome | None:
    entry = table.get(key)
    if entry is None:
        return None
    if entry[0] <= now:
        del table[key]
        return None
    return entry[1]


def _remember(table: OrderedDict, key, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _MAX_HOSTS:
        table.popitem(last=False)


def _error_outcome(exc: BaseException) -> _Outcome:
    """Classifies an exception raised while requesting or reading a response."""
    failure = classify_error(exc, permanent=(ssl.SSLCertVerificationError,))
    return _Outcome(failure.reason, retryable=failure.retryable, detail=failure.detail)


def _content_length(response: urllib3.BaseHTTPResponse) -> int | None:
    try:
        return int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Reads a short body so the connection can be reused; closes it otherwise."""
    remaining = _DISCARD_LIMIT_BYTES
    try:
        for chunk in response.stream(_CHUNK_BYTES, decode_content=False):
            remaining -= len(chunk)
            if remaining < 0:
                response.close()
                return
    except (HTTPError, OSError):
        response.close()


class Fetcher:
    """Fetches untrusted http(s) URLs safely; share one instance between threads.

    Args:
        settings: Limits, identity and the allow list.
        resolver: Maps a hostname to its addresses (text form); defaults to
            the system resolver. Called once per hop; the request goes to the
            first address that is not forbidden (the next ones on retries). A
            proxy's hostname is resolved with it too, and its address checked.

    Raises:
        ValueError: If a setting or a proxy environment variable is invalid.
    """

    def __init__(self, settings: FetchSettings = FetchSettings(), resolver: Resolver | None = None):
        if min(settings.connect_timeout, settings.read_timeout, settings.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if min(settings.max_bytes, settings.max_redirects, settings.retries, settings.backoff) < 0:
            raise ValueError("max_bytes, max_redirects, retries and backoff must be >= 0")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in settings.user_agent):
            raise ValueError("user_agent must not contain control characters")
        self._settings = settings
        self._resolver = resolver or resolve_host
        self._hosts = HostState(settings)
        self._agent = settings.user_agent.split("/", 1)[0].strip().lower()
        self._disallowed = frozenset(d.strip().lower() for d in settings.disallowed_robots_directives)
        self._allowed = _parse_networks(settings.allow_networks)
        self._ca_certs = settings.ca_certs or certifi.where()
        self._headers = {
            "User-Agent": settings.user_agent,
            "Accept": "*/*",
            "Accept-Encoding": "identity",
        }
        self._proxies = EnvironmentProxies()
        for scheme, proxy in self._proxies.urls.items():
            if proxy.scheme != "http" or not proxy.host:
                raw = self._proxies.environment[scheme]
                raise ValueError(f"unsupported proxy {raw!r}: only http:// proxies are supported")
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(self, url: str) -> FetchResult:
        """Fetches ``url``, following redirects; never raises."""
        try:
            return self._fetch(url)
        except Exception as exc:  # the last guard of the never-raises contract
            return FetchResult(url, url, False, "connection_error", detail=f"unexpected {exc!r}")

    def fetch_many(self, urls: Sequence[str], concurrency: int = 16) -> list[FetchResult]:
        """Fetches ``urls`` with ``concurrency`` threads; results keep input order."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=min(concurrency, len(urls))) as executor:
            return list(executor.map(self.fetch, urls))

    def close(self) -> None:
        """Closes every pooled connection; the fetcher stays usable."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fetch(self, url: str) -> FetchResult:
        deadline = time.monotonic() + self._settings.total_timeout
        current = url
        for _ in range(self._settings.max_redirects + 1):
            target = _parse_target(current)
            if isinstance(target, str):
                return FetchResult(url, current, False, "invalid_url", detail=target)
            addresses = self._resolve(target)
            if isinstance(addresses, _Outcome):
                return FetchResult(url, current, False, addresses.reason, detail=addresses.detail)
            outcome, attempts = self._request(target, addresses, deadline)
            if outcome.location is None:
                return FetchResult(
                    url=url,
                    final_url=current,
                    ok=outcome.reason == "ok",
                    reason=outcome.reason,
                    status=outcome.status,
                    content=outcome.content,
                    content_type=outcome.content_type,
                    attempts=attempts,
                    detail=outcome.detail,
                )
            try:
                following = urllib.parse.urljoin(current, outcome.location)
            except ValueError as exc:
                detail = f"bad redirect Location {outcome.location!r}: {exc}"
                return FetchResult(url, current, False, "invalid_url", outcome.status, detail=detail)
            if target.scheme == "https" and not self._settings.allow_https_downgrade:
                # The next hop's scheme, judged exactly as the next hop will parse it.
                next_target = _parse_target(following)
                if not isinstance(next_target, str) and next_target.scheme == "http":
                    detail = f"{current} redirected to {following} (allow_https_downgrade is off)"
                    return FetchResult(url, following, False, "insecure_redirect", outcome.status, detail=detail)
            current = following
        return FetchResult(
            url,
            current,
            False,
            "too_many_redirects",
            detail=f"more than {self._settings.max_redirects} redirects",
        )

    def _resolve(self, target: _Target) -> list[str] | _Outcome:
        """The allowed addresses of ``target``, or why there are none."""
        if target.is_ip:
            addresses = [target.host]
        else:
            addresses = self._hosts.resolve(target.host, self._lookup)
            if isinstance(addresses, _Outcome):
                return addresses
        allowed = [ip for ip in addresses if not _is_forbidden(ip, self._allowed)]
        if not allowed:
            return _Outcome("forbidden_address", detail=f"{target.host} -> {', '.join(addresses)}")
        return allowed

    def _lookup(self, host: str) -> list[str] | _Outcome:
        """The resolver's addresses for ``host``, or its failure as a ``dns_error``."""
        try:
            addresses = [str(a) for a in self._resolver(host)]
        except Exception as exc:  # resolvers raise anything: gaierror, UnicodeError, ...
            return _Outcome("dns_error", detail=f"{host}: {exc!r}")
        return addresses or _Outcome("dns_error", detail=f"{host}: no addresses")

    def _request(self, target: _Target, addresses: list[str], deadline: float) -> tuple[_Outcome, int]:
        """Requests ``target`` with retries, all before ``deadline``; returns the outcome and the
        attempts (0 when the host is skipped)."""
        key = (target.host, target.port)
        skipped = self._hosts.skipped(key)
        if skipped is not None:
            return skipped, 0
        outcome, attempts = with_retries(
            lambda attempt: self._attempt(target, addresses[(attempt - 1) % len(addresses)], deadline),
            self._settings.retries,
            self._settings.backoff,
            deadline=deadline,
        )
        self._hosts.record(key, outcome)
        return outcome, attempts

    def _attempt(self, target: _Target, ip: str, deadline: float) -> _Outcome:
        """One request, in one of the host's connection slots, once its ``Retry-After`` has passed."""
        key = (target.host, target.port)
        skipped = self._hosts.skipped(key)  # another thread may have given up on the host meanwhile
        if skipped is not None:
            return skipped
        if not self._hosts.enter(key, deadline):
            return self._timed_out()
        try:
            outcome = self._request_once(target, ip, deadline)
        finally:
            self._hosts.leave(key)
        if outcome.retry_after:
            self._hosts.hold_off(key, outcome.retry_after)
        return outcome

    def _request_once(self, target: _Target, ip: str, deadline: float) -> _Outcome:
        left = deadline - time.monotonic()
        if left <= 0:
            return self._timed_out()
        proxy = self._proxy_for(target, ip)
        if isinstance(proxy, _Outcome):
            return proxy
        headers = dict(self._headers, Host=target.authority)
        if proxy is not None and target.scheme == "http":
            pool = self._pool(("proxy", proxy.url), lambda: self._proxy_pool(proxy))
            request_url = target.absolute_url
            headers.update(proxy_headers(proxy))
        else:
            key = (target.scheme, ip, target.port, target.host, proxy.url if proxy else None)
            pool = self._pool(key, lambda: self._origin_pool(target, ip, proxy))
            request_url = target.request_uri
        timeout = urllib3.Timeout(
            connect=min(self._settings.connect_timeout, left), read=min(self._settings.read_timeout, left)
        )
        _deadline.value, _deadline.read_timeout = deadline, self._settings.read_timeout
        try:
            try:
                response = pool.urlopen(
                    "GET",
                    request_url,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=timeout,
                    preload_content=False,
                    release_conn=False,
                    decode_content=True,
                )
            except Exception as exc:
                return self._failed(exc, deadline)
            try:
                return self._read(response, deadline)
            except Exception as exc:
                response.close()
                return self._failed(exc, deadline)
            finally:
                response.release_conn()
        finally:
            _deadline.value = None

    def _timed_out(self, status: int | None = None, content_type: str | None = None) -> _Outcome:
        detail = f"not fetched within total_timeout={self._settings.total_timeout}s"
        return _Outcome("timeout", status, content_type=content_type, detail=detail)

    def _failed(self, exc: BaseException, deadline: float) -> _Outcome:
        """The outcome of an exception; any failure once the deadline has passed is a final ``timeout``."""
        if time.monotonic() >= deadline:
            return self._timed_out()
        return _error_outcome(exc)

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> _Outcome:
        status = response.status
        content_type = response.headers.get("Content-Type")
        location = response.headers.get("Location")
        if status in REDIRECT_STATUSES:
            _discard(response)
            if not (location or "").strip():
                detail = f"HTTP {status} without a Location header"
                return _Outcome("redirect_without_location", status, content_type=content_type, detail=detail)
            return _Outcome(f"http_{status}", status, content_type=content_type, location=location)
        if not 200 <= status < 300:
            _discard(response)
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                asked = retry_after_seconds(response.headers.get("Retry-After"), time.time())
                retry_after = None if asked is None else min(asked, self._settings.max_retry_after)
            return _Outcome(f"http_{status}", status, content_type=content_type,
                            retryable=status >= 500 or status == 429, retry_after=retry_after)
        if self._disallowed:
            values = response.headers.getlist("X-Robots-Tag")
            directive = robots_opt_out(values, self._agent, self._disallowed)
            if directive is not None:
                _discard(response)
                detail = f"X-Robots-Tag: {'; '.join(values)}"
                return _Outcome(OPTED_OUT, status, content_type=content_type, detail=detail)
        limit = self._settings.max_bytes
        length = _content_length(response)
        if length is not None and length > limit:
            response.close()
            detail = f"Content-Length {length} exceeds {limit} bytes"
            return _Outcome("too_large", status, content_type=content_type, detail=detail)
        chunks: list[bytes] = []  # joined once at the end: a body of one chunk is never copied
        size = 0
        for chunk in response.stream(_CHUNK_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                response.close()
                detail = f"body exceeds {limit} bytes"
                return _Outcome("too_large", status, content_type=content_type, detail=detail)
            if time.monotonic() > deadline:
                response.close()
                return self._timed_out(status, content_type)
        return _Outcome("ok", status, b"".join(chunks), content_type)

    def _proxy_for(self, target: _Target, ip: str) -> Url | _Outcome | None:
        """The proxy for ``target``, pinned to its checked address; or why it may not be used."""
        bracketed_ip = f"[{ip}]" if ":" in ip else ip  # so the port splitter leaves IPv6 alone
        proxy = self._proxies.for_target(target.scheme, target.host, bracketed_ip)
        if proxy is None:
            return None
        host = (proxy.host or "").strip("[]").lower()
        proxy_target = _Target("http", host, proxy.port or 80, "/", _is_ip_literal(host))
        addresses = self._resolve(proxy_target)
        if isinstance(addresses, _Outcome):
            return _Outcome(addresses.reason, detail=f"proxy {addresses.detail}")
        return proxy._replace(host=addresses[0], port=proxy.port or 80)

    def _pool(self, key: tuple, make: Callable[[], urllib3.HTTPConnectionPool]) -> urllib3.HTTPConnectionPool:
        evicted = None
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._pools[key] = make()
            if len(self._pools) > _MAX_POOLS:
                _, evicted = self._pools.popitem(last=False)
        if evicted is not None:
            evicted.close()
        return pool

    def _proxy_pool(self, proxy: Url) -> urllib3.HTTPConnectionPool:
        pool = urllib3.HTTPConnectionPool(
            proxy.host, proxy.port or 80, maxsize=_POOL_MAXSIZE, block=False, retries=False
        )
        pool.ConnectionCls = _HTTPConnection
        return pool

    def _origin_pool(self, target: _Target, ip: str, proxy: Url | None) -> urllib3.HTTPConnectionPool:
        """A pool whose connections go to ``ip`` (directly, or tunnelled through ``proxy``)."""
        if target.scheme == "http":
            pool = urllib3.HTTPConnectionPool(
                ip, target.port, maxsize=_POOL_MAXSIZE, block=False, retries=False
            )
            pool.ConnectionCls = _HTTPConnection
            return pool
        tunnel = {}
        if proxy is not None:
            tunnel = {"_proxy": proxy, "_proxy_headers": proxy_headers(proxy)}
        pool = urllib3.HTTPSConnectionPool(
            ip,
            target.port,
            maxsize=_POOL_MAXSIZE,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self._ca_certs,
            server_hostname=target.host,
            **tunnel,
        )
        pool.ConnectionCls = _HTTPSConnection
        return pool
