"""The core the project's HTTP clients share: errors as reasons, retries with backoff, proxies.

Two clients stand on it, each with its own pools, timeouts and response handling:
:class:`curation.fetch.Fetcher` (untrusted URLs, every address checked, pools pinned
to checked addresses) and :class:`curation.models.endpoint_generator.EndpointGenerator`
(an OpenAI-compatible server the user configured). Both call urllib3 with its own
retries and redirects off, turn every attempt into an outcome with a ``reason`` and
a ``retryable`` flag, and never raise for a single request.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.util import Url, make_headers, parse_url

_TIMEOUTS = (urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout)


class Retryable(Protocol):
    retryable: bool


Outcome = TypeVar("Outcome", bound=Retryable)


@dataclass(frozen=True)
class Failure:
    """An exception raised while requesting or reading a response, as a reason.

    Attributes:
        reason: ``timeout`` or ``connection_error``.
        retryable: whether another attempt may succeed.
        detail: the exception's type and message (``unexpected ...`` for one no client expects).
    """

    reason: str
    retryable: bool
    detail: str


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its arguments that are exceptions, and their causes, recursively."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is done for done in seen):
            continue
        seen.append(current)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def classify_error(
    exc: BaseException, permanent: tuple[type[BaseException], ...], detail_chars: int | None = None
) -> Failure:
    """Names an exception from a request attempt, looking through what it wraps.

    A ``permanent`` error anywhere in the chain fails at once, a refused or failed
    connection is a retryable ``connection_error``, a timeout a retryable ``timeout``,
    any other urllib3 or OS error a retryable ``connection_error``; anything else is
    an unexpected, final ``connection_error``.

    Args:
        exc: the exception.
        permanent: exception types no retry can fix (a certificate, say).
        detail_chars: the most characters of the exception's text kept in ``detail``.
    """
    chain = _chain(exc)
    detail = f"{type(exc).__name__}: {exc}"[:detail_chars]
    if any(isinstance(e, permanent) for e in chain):
        return Failure("connection_error", False, detail)
    if any(isinstance(e, NewConnectionError) for e in chain):  # a subclass of urllib3's TimeoutError
        return Failure("connection_error", True, detail)
    if any(isinstance(e, _TIMEOUTS) for e in chain):
        return Failure("timeout", True, detail)
    if isinstance(exc, (HTTPError, OSError)):
        return Failure("connection_error", True, detail)
    return Failure("connection_error", False, f"unexpected {detail}")


def with_retries(
    attempt: Callable[[int], Outcome], retries: int, backoff: float, deadline: float | None = None
) -> tuple[Outcome, int]:
    """Calls ``attempt(1)``, ``attempt(2)``, ... until an outcome is not retryable or ``retries`` are spent.

    Sleeps ``backoff`` seconds before the first retry, doubled before each next one, or the
    outcome's ``retry_after`` seconds when it has one (a server's ``Retry-After``).
    With a ``deadline`` (a :func:`time.monotonic` value) no retry starts, and no
    backoff sleeps, past it. Returns the last outcome and the number of attempts made.
    """
    number = 1
    while True:
        outcome = attempt(number)
        if not outcome.retryable or number > retries:
            return outcome, number
        pause = getattr(outcome, "retry_after", None)
        if pause is None:
            pause = backoff * 2 ** (number - 1)
        if deadline is not None and time.monotonic() + pause >= deadline:
            return outcome, number
        time.sleep(pause)
        number += 1


def proxy_headers(proxy: Url) -> dict[str, str]:
    """The ``Proxy-Authorization`` header for a proxy URL with credentials, else nothing."""
    return make_headers(proxy_basic_auth=proxy.auth) if proxy.auth else {}


class EnvironmentProxies:
    """``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` as they were when built.

    Args:
        schemes: the URL schemes whose proxy is read (a proxy given without a scheme is ``http://``).
    """

    def __init__(self, schemes: tuple[str, ...] = ("http", "https")):
        self.environment = urllib.request.getproxies_environment()
        self.urls: dict[str, Url] = {
            scheme: parse_url(raw if "://" in raw else f"http://{raw}")
            for scheme in schemes
            if (raw := self.environment.get(scheme))
        }

    def for_target(self, scheme: str, *hosts: str) -> Url | None:
        """The proxy for a ``scheme`` URL, or None if there is none or ``NO_PROXY`` names any of ``hosts``."""
        proxy = self.urls.get(scheme)
        if proxy is None:
            return None
        if any(urllib.request.proxy_bypass_environment(host, self.environment) for host in hosts):
            return None
        return proxy
