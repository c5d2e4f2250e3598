"""The threaded loopback HTTP server, its handler and its lifecycle, under the sample servers."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

LOOPBACK = "127.0.0.1"

_Service = TypeVar("_Service", bound="LoopbackService")


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 (an ephemeral port) that can close its open connections.

    Args:
        owner: the object the handlers reach as ``self.server.owner``.
        handler: the request handler class.
    """

    daemon_threads = True
    request_queue_size = 512

    def __init__(self, owner: Any, handler: type[BaseHTTPRequestHandler]):
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((LOOPBACK, 0), handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would do a reverse DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shuts every open connection down, so a stopping server does not wait on idle clients."""
        with self._open_lock:
            for request in list(self._open):
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up (after a timeout) are routine
            super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 keep-alive handler; :meth:`dispatch` hands a request to ``server.owner._serve``.

    A subclass names the methods it answers, e.g. ``def do_GET(self): self.dispatch()``.
    """

    protocol_version = "HTTP/1.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are dropped after this many seconds
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base signature
        pass

    def dispatch(self) -> None:
        self.server.owner._serve(self)


class LoopbackService:
    """A sample server's lifecycle: a :class:`LoopbackHTTPServer` (and any side listeners) in daemon threads.

    Use it as a context manager or call :meth:`start` and :meth:`stop`. A subclass
    sets :attr:`handler` (its requests reach the subclass's ``_serve(handler)``) and
    :attr:`url_path` (appended to :attr:`base_url`), may open more listeners in
    :meth:`_side_listeners`, and waits on ``self._stopping`` so that :meth:`stop`
    wakes delayed replies.
    """

    handler: type[LoopbackHandler]
    url_path = ""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._httpd: LoopbackHTTPServer | None = None
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._base_url = ""

    def __enter__(self: _Service) -> _Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Binds the listeners and serves each in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._stopping.clear()
        side = self._side_listeners()
        self._httpd = LoopbackHTTPServer(self, self.handler)
        self._base_url = f"http://{LOOPBACK}:{self._httpd.server_port}{self.url_path}"
        self._servers = [self._httpd, *side]
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for server in self._servers
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops serving, wakes delayed replies and closes open connections."""
        if self._httpd is None:
            return
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
        self._httpd.close_connections()
        for server in self._servers:
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._httpd = None
        self._servers = []

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` and :attr:`url_path`."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base_url

    def _side_listeners(self) -> list[socketserver.BaseServer]:
        """Servers bound before the HTTP server and run beside it; none here."""
        return []
