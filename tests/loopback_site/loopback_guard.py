"""The loopback guard every process of the test suite runs under: nothing leaves 127.0.0.0/8.

Installed in the pytest process by ``tests/conftest.py`` and, through ``sitecustomize.py`` in
this directory, in every Python process the tests start: the conftest puts this directory first
on ``PYTHONPATH`` and sets ``CURATION_TEST_LOOPBACK_ONLY=1``, children inherit both, and
:func:`install` re-adds them to any environment a process hands to ``subprocess.Popen`` whole
(``env={...}``), so grandchildren (Beam's workers, decoder children) are guarded too.

What it refuses, with :class:`LoopbackGuardError` (a ``PermissionError`` whose message starts
with ``loopback guard:``):

- ``connect``, ``connect_ex``, ``sendto`` and ``sendmsg`` of an IPv4/IPv6 socket, and
  ``socket.create_connection``, to any address outside the allowed networks: 127.0.0.0/8 and
  ``::1``, or the loopback subnets ``CURATION_TEST_ALLOWED_NETWORKS`` names (read at each check,
  so the guard's own tests narrow it to 127.0.0.1 and model the forbidden host as 127.0.0.2:
  even a broken guard could then reach nothing but loopback);
- name lookups (``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``,
  ``getnameinfo``) of anything but a loopback literal, ``localhost`` or a name registered with
  :func:`register_name`. A refused name is refused *before* the system resolver is called, so no
  DNS query leaves the machine; ``localhost`` goes to the system resolver (``/etc/hosts``) and
  every address it gives must be loopback; a registered name resolves to its loopback address
  without the resolver.

Out of its reach: code that calls the C library itself (gRPC's core, which Beam's runners use
for their loopback control and data channels, libcurl, ffmpeg), and Python started with ``-S``,
``-I`` or ``-E`` (no ``sitecustomize``, or no ``PYTHONPATH``).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import subprocess

FLAG = "CURATION_TEST_LOOPBACK_ONLY"  # "1": sitecustomize installs the guard
NAMES = "CURATION_TEST_LOOPBACK_NAMES"  # "name=127.0.0.x,other=::1": names the tests registered
SITE_DIR = os.path.dirname(os.path.abspath(__file__))
ALLOWED = "CURATION_TEST_ALLOWED_NETWORKS"  # comma-separated loopback CIDRs the guard lets through
DEFAULT_ALLOWED = "127.0.0.0/8,::1/128"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
LOCALHOST = frozenset({"localhost"})

original_connect = socket.socket.connect
original_connect_ex = socket.socket.connect_ex
original_sendto = socket.socket.sendto
original_sendmsg = socket.socket.sendmsg
original_create_connection = socket.create_connection
original_getaddrinfo = socket.getaddrinfo
original_gethostbyname = socket.gethostbyname
original_gethostbyname_ex = socket.gethostbyname_ex
original_gethostbyaddr = socket.gethostbyaddr
original_getnameinfo = socket.getnameinfo
original_popen_init = subprocess.Popen.__init__


class LoopbackGuardError(PermissionError):
    """A test process tried to reach, or look up, something outside loopback."""


def _refused(what: str) -> LoopbackGuardError:
    return LoopbackGuardError(f"loopback guard: {what} (tests may only reach 127.0.0.0/8)")


# --------------------------------------------------------------------------- checks


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%")[0].strip("[]"))
    except ValueError:
        return None


@functools.lru_cache(maxsize=8)
def _networks(spec: str) -> tuple:
    """The networks of an ``ALLOWED`` value; each must lie inside loopback."""
    found = tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())
    for network in found:
        if not any(network.version == loop.version and network.subnet_of(loop) for loop in LOOPBACK):
            raise ValueError(f"{ALLOWED}: {network} is not inside 127.0.0.0/8 or ::1")
    return found


def _is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` lies in the allowed (loopback) networks; an IPv4-mapped address as its IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    networks = _networks(os.environ.get(ALLOWED) or DEFAULT_ALLOWED)
    return any(ip.version == network.version and ip in network for network in networks)


def _normal_name(host) -> str:
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", "replace")
    return str(host).lower().rstrip(".")


def registered_names() -> dict[str, str]:
    """The names the tests registered (in this process or a parent), each with its loopback address."""
    found = {}
    for entry in os.environ.get(NAMES, "").split(","):
        name, _, ip = entry.partition("=")
        if name.strip() and ip.strip():
            found[_normal_name(name.strip())] = ip.strip()
    return found


def register_name(name: str, ip: str = "127.0.0.1") -> None:
    """Lets ``name`` resolve (to ``ip``, which must be loopback) here and in processes started later."""
    address = _ip(ip)
    if address is None or not _is_loopback(address) or "," in name or "=" in name:
        raise ValueError(f"register_name needs a plain name and a loopback address, got {name!r}, {ip!r}")
    names = registered_names()
    names[_normal_name(name)] = ip
    os.environ[NAMES] = ",".join(f"{n}={a}" for n, a in names.items())


def lookup_target(host, wildcard: bool = False) -> str | None:
    """What a lookup of ``host`` may ask the system: ``host`` itself, the address of a registered name.

    ``wildcard`` (``getaddrinfo`` only) also lets ``None``, ``""`` and the unspecified addresses
    through: they name this host for a bind, and no resolver is asked about them.

    Raises:
        LoopbackGuardError: for anything else, before any resolver runs.
    """
    name = "" if host is None else _normal_name(host)
    if name == "" or name in ("0.0.0.0", "::"):
        if wildcard:
            return host
        raise _refused(f"refused to look up {host!r}")
    ip = _ip(name)
    if ip is not None:
        if _is_loopback(ip):
            return host
        raise _refused(f"refused to look up the non-loopback address {host!r}")
    if name in LOCALHOST:
        return host
    registered = registered_names().get(name)
    if registered is not None:
        return registered
    raise _refused(
        f"refused to resolve {host!r} (no DNS query was made; only loopback literals, "
        "'localhost' and names registered with loopback_guard.register_name resolve)"
    )


def _checked_results(host, results: list) -> list:
    """``getaddrinfo`` results of ``localhost``, refused if any address is not loopback."""
    for info in results:
        sockaddr = info[4]
        if info[0] in (socket.AF_INET, socket.AF_INET6):
            ip = _ip(str(sockaddr[0]))
            if ip is not None and not (_is_loopback(ip) or ip.is_unspecified):
                raise _refused(f"{host!r} resolved to the non-loopback address {sockaddr[0]!r}")
    return results


def check_address(sock: socket.socket, address) -> None:
    """Raises :class:`LoopbackGuardError` unless ``sock`` may send to ``address``."""
    connect_address(sock, address)


def connect_address(sock: socket.socket, address):
    """``address`` as it may be connected to (a registered name becomes its address), or raises."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return address
    if not isinstance(address, tuple) or not address:
        raise _refused(f"refused a connection to {address!r}")
    host = address[0]
    ip = _ip(_normal_name(host))
    if ip is not None:
        if _is_loopback(ip):
            return address
        raise _refused(f"refused a connection to {address!r}")
    name = _normal_name(host)
    if name in LOCALHOST:
        return address
    registered = registered_names().get(name)
    if registered is not None:
        return (registered, *address[1:])
    raise _refused(f"refused a connection to {address!r}: the name is not loopback")


# --------------------------------------------------------------------------- the patches


def guarded_connect(self, address):
    return original_connect(self, connect_address(self, address))


def guarded_connect_ex(self, address):
    return original_connect_ex(self, connect_address(self, address))


def guarded_sendto(self, data, *args):
    if args:
        args = (*args[:-1], connect_address(self, args[-1]))
    return original_sendto(self, data, *args)


def guarded_sendmsg(self, buffers, *args):
    if len(args) >= 3 and args[2] is not None:
        args = (*args[:2], connect_address(self, args[2]), *args[3:])
    return original_sendmsg(self, buffers, *args)


def guarded_create_connection(address, *args, **kwargs):
    host, port = address[0], address[1]
    return original_create_connection((lookup_target(host), port), *args, **kwargs)


def guarded_getaddrinfo(host, *args, **kwargs):
    target = lookup_target(host, wildcard=True)
    return _checked_results(host, original_getaddrinfo(target, *args, **kwargs))


def guarded_gethostbyname(host):
    address = original_gethostbyname(lookup_target(host))
    _checked_results(host, [(socket.AF_INET, 0, 0, "", (address, 0))])
    return address


def guarded_gethostbyname_ex(host):
    target = lookup_target(host)
    name, aliases, addresses = original_gethostbyname_ex(target)
    _checked_results(host, [(socket.AF_INET, 0, 0, "", (a, 0)) for a in addresses])
    return name, aliases, addresses


def guarded_gethostbyaddr(host):
    return original_gethostbyaddr(lookup_target(host))


def guarded_getnameinfo(sockaddr, flags):
    target = lookup_target(sockaddr[0])
    return original_getnameinfo((target, *sockaddr[1:]), flags)


def guard_environment(env):
    """``env`` with the guard's variables added: the flag, this directory first on PYTHONPATH, the names."""
    env = dict(env)
    env[FLAG] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != SITE_DIR]
    env["PYTHONPATH"] = os.pathsep.join([SITE_DIR, *paths])
    if os.environ.get(NAMES) and NAMES not in env:
        env[NAMES] = os.environ[NAMES]
    return env


def guarded_popen_init(self, *args, **kwargs):
    if kwargs.get("env") is not None:
        kwargs["env"] = guard_environment(kwargs["env"])
    elif len(args) > 10 and args[10] is not None:  # env, passed by position
        args = (*args[:10], guard_environment(args[10]), *args[11:])
    return original_popen_init(self, *args, **kwargs)


PATCHES = (
    (socket.socket, "connect", guarded_connect),
    (socket.socket, "connect_ex", guarded_connect_ex),
    (socket.socket, "sendto", guarded_sendto),
    (socket.socket, "sendmsg", guarded_sendmsg),
    (socket, "create_connection", guarded_create_connection),
    (socket, "getaddrinfo", guarded_getaddrinfo),
    (socket, "gethostbyname", guarded_gethostbyname),
    (socket, "gethostbyname_ex", guarded_gethostbyname_ex),
    (socket, "gethostbyaddr", guarded_gethostbyaddr),
    (socket, "getnameinfo", guarded_getnameinfo),
    (subprocess.Popen, "__init__", guarded_popen_init),
)


def enable_for_children() -> None:
    """Makes every process this one starts from now on install the guard (through sitecustomize)."""
    os.environ.update(guard_environment(os.environ))


def install() -> None:
    """Patches this process's socket and subprocess modules (idempotent)."""
    for owner, name, patched in PATCHES:
        setattr(owner, name, patched)


def installed() -> bool:
    return all(getattr(owner, name) is patched for owner, name, patched in PATCHES)
