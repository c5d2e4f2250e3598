"""Suite-wide guard: no process a test starts may reach, or look up, anything outside loopback.

Tests model forbidden hosts with loopback addresses (127.0.0.2); the guard
(``tests/loopback_site/loopback_guard.py``) makes a connection to any non-loopback
address, and a lookup of any name but ``localhost`` and names the tests register, fail
loudly, so a broken fetcher guard cannot reach a real private, link-local or public host
and no DNS query leaves the machine. It is installed here, in the pytest process, before
any test module is imported, and through ``tests/loopback_site/sitecustomize.py`` in every
Python process started from it: Beam's multi-processing workers, the job service, decoder
children and ``python -c`` children alike.
"""

import os
import sys

import pytest

_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loopback_site")
if _SITE not in sys.path:
    sys.path.insert(0, _SITE)

import loopback_guard  # noqa: E402 - the path above first

loopback_guard.enable_for_children()
loopback_guard.install()


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    assert loopback_guard.installed(), "the loopback guard was removed from the test process"
    yield
