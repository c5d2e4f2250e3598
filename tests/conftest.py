"""Suite-wide guard: no test may open a connection outside the loopback range.

Tests model forbidden hosts with loopback addresses (127.0.0.2); this guard makes
a connection to any non-loopback address fail loudly in the test process, so a
broken fetcher guard cannot reach a real private, link-local or public host.
"""

import ipaddress
import socket

import pytest

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _check(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise PermissionError(f"test tried to connect outside loopback: {address!r}")


def _guarded_connect(self, address):
    _check(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
