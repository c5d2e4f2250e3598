"""Suite-wide guard: no test may open a connection outside the loopback range.

Tests model forbidden hosts with loopback addresses (127.0.0.2); this guard makes
a connection to any non-loopback address fail loudly in the test process, so a
broken fetcher guard cannot reach a real private, link-local or public host.
"""

import socket

import pytest

from loopback_guard import guarded_connect, guarded_connect_ex, original_connect, original_connect_ex


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    yield
    socket.socket.connect = original_connect
    socket.socket.connect_ex = original_connect_ex
