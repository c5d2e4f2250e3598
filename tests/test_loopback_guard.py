"""The loopback guard holds in every process the suite starts, and over name resolution.

The guard's allowed network is narrowed to 127.0.0.1 here (``CURATION_TEST_ALLOWED_NETWORKS``),
so the forbidden hosts are loopback ones (127.0.0.2, 127.0.0.3) and the forbidden name is
``forbidden.invalid``: a broken guard could reach nothing but loopback. A process that does not
report the guard installed makes no attempt at all, and every lookup goes through a spy on the
guard's reference to the real resolver, so no DNS query leaves the machine either way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import loopback_guard
from loopback_guard import LoopbackGuardError

FORBIDDEN_NAME = "forbidden.invalid"
ONLY_127_0_0_1 = "127.0.0.1/32,::1/128"

# Defines probe(port): what one process's guard does with forbidden and allowed targets.
PROBE_SOURCE = r'''
import json, os, socket


def probe(port):
    report = {"pid": os.getpid(), "flag": os.environ.get("CURATION_TEST_LOOPBACK_ONLY")}
    report["installed"] = getattr(socket.socket.connect, "__module__", None) == "loopback_guard"
    if not report["installed"]:
        return report  # no guard: try nothing, so that nothing leaves
    import loopback_guard

    os.environ[loopback_guard.ALLOWED] = "127.0.0.1/32,::1/128"  # 127.0.0.2 and .3 stand for the world
    asked = []
    real = loopback_guard.original_getaddrinfo

    def spy(host, *args, **kwargs):  # the resolver behind the guard: records, and never asks DNS
        asked.append(str(host))
        if str(host) not in ("localhost", "127.0.0.1"):
            raise OSError("the probe's spy would have sent a DNS query for %r" % (host,))
        return real(host, *args, **kwargs)

    loopback_guard.original_getaddrinfo = spy

    def tcp(address, method):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            return getattr(sock, method)(address)

    def udp(address):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return sock.sendto(b"x", address)

    attempts = {
        "connect": lambda: tcp(("127.0.0.2", port), "connect"),
        "connect_ex": lambda: tcp(("127.0.0.3", port), "connect_ex"),
        "connect_name": lambda: tcp(("forbidden.invalid", port), "connect"),
        "sendto": lambda: udp(("127.0.0.2", port)),
        "create_connection": lambda: socket.create_connection(("forbidden.invalid", port), timeout=1.0).close(),
        "getaddrinfo": lambda: socket.getaddrinfo("forbidden.invalid", port),
        "getaddrinfo_ip": lambda: socket.getaddrinfo("127.0.0.2", port),
        "gethostbyname": lambda: socket.gethostbyname("forbidden.invalid"),
        "gethostbyname_ex": lambda: socket.gethostbyname_ex("forbidden.invalid"),
        "gethostbyaddr": lambda: socket.gethostbyaddr("127.0.0.2"),
        "localhost": lambda: sorted({info[4][0] for info in socket.getaddrinfo("localhost", port)}),
        "loopback_server": lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close() or "connected",
    }
    for name, attempt in attempts.items():
        try:
            report[name] = ["ok", attempt()]
        except Exception as error:
            report[name] = [type(error).__name__, str(error)]
    report["asked"] = asked
    loopback_guard.original_getaddrinfo = real
    del os.environ[loopback_guard.ALLOWED]
    return report
'''

REFUSED = (
    "connect", "connect_ex", "connect_name", "sendto", "create_connection",
    "getaddrinfo", "getaddrinfo_ip", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
)


def probe_function():
    """``probe`` from :data:`PROBE_SOURCE`, in a module no worker needs to import (pickled by value)."""
    namespace = {"__name__": "loopback_probe"}
    exec(PROBE_SOURCE, namespace)
    return namespace["probe"]


def assert_guarded(report: dict) -> None:
    assert report["installed"], f"the guard is not installed in process {report['pid']}: {report}"
    for name in REFUSED:
        kind, message = report[name]
        assert kind == "LoopbackGuardError" and message.startswith("loopback guard:"), (name, report[name])
    assert "no DNS query was made" in report["getaddrinfo"][1]
    assert report["asked"] == ["localhost", "127.0.0.1"], "only loopback reached the real resolver"
    kind, addresses = report["localhost"]
    assert kind == "ok" and addresses and all(a.startswith("127.") or a == "::1" for a in addresses)
    assert report["loopback_server"] == ["ok", "connected"]


@pytest.fixture
def loopback_server():
    """A listening socket on 127.0.0.1 that accepts and closes connections; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def run_probe_in_child(port: int, **popen) -> dict:
    code = PROBE_SOURCE + f"\nprint(json.dumps(probe({port})))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **popen)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the test process


def test_the_test_process_is_guarded(loopback_server):
    report = probe_function()(loopback_server)
    assert report["pid"] == os.getpid()
    assert_guarded(report)


def test_a_refused_name_never_reaches_the_resolver(monkeypatch):
    asked = []
    monkeypatch.setattr(loopback_guard, "original_getaddrinfo", lambda *a, **k: asked.append(a) or [])
    monkeypatch.setattr(loopback_guard, "original_gethostbyname", lambda *a: asked.append(a) or "203.0.113.9")
    monkeypatch.setattr(loopback_guard, "original_gethostbyname_ex", lambda *a: asked.append(a) or ("", [], []))
    for lookup in (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex):
        for name in (FORBIDDEN_NAME, "FORBIDDEN.INVALID.", b"forbidden.invalid", "127.1", "2130706433",
                     "metadata.google.internal"):
            with pytest.raises(LoopbackGuardError, match="loopback guard: refused to resolve"):
                lookup(name, 80) if lookup is socket.getaddrinfo else lookup(name)
    assert asked == []


def test_loopback_literals_localhost_and_registered_names_resolve(monkeypatch):
    assert socket.gethostbyname("127.0.0.2") == "127.0.0.2"
    assert {info[4][0] for info in socket.getaddrinfo("127.0.0.1", 80)} == {"127.0.0.1"}
    assert socket.gethostbyname("localhost").startswith("127.")
    monkeypatch.delenv(loopback_guard.NAMES, raising=False)
    with pytest.raises(LoopbackGuardError):
        socket.gethostbyname("images.test")
    loopback_guard.register_name("images.test", "127.0.0.3")
    assert socket.gethostbyname("images.test") == "127.0.0.3"
    assert {info[4][0] for info in socket.getaddrinfo("Images.Test", 80)} == {"127.0.0.3"}
    with socket.socket() as sock:
        assert loopback_guard.connect_address(sock, ("images.test", 80)) == ("127.0.0.3", 80)
    monkeypatch.setenv(loopback_guard.ALLOWED, ONLY_127_0_0_1)
    with pytest.raises(ValueError):
        loopback_guard.register_name("evil.test", "127.0.0.9")  # outside the allowed network


def test_the_allowed_network_can_only_narrow_loopback(monkeypatch):
    monkeypatch.setenv(loopback_guard.ALLOWED, "126.0.0.0/7")  # 126.x and 127.x: past loopback
    with socket.socket() as sock, pytest.raises(ValueError, match="not inside 127.0.0.0/8"):
        loopback_guard.connect_address(sock, ("127.0.0.1", 80))


def test_binding_to_all_interfaces_may_be_looked_up_but_not_connected_to():
    assert socket.getaddrinfo(None, 0, flags=socket.AI_PASSIVE)
    assert socket.getaddrinfo("0.0.0.0", 0)
    with socket.socket() as sock, pytest.raises(LoopbackGuardError):
        sock.connect(("0.0.0.0", 9))
    with pytest.raises(LoopbackGuardError):
        socket.gethostbyaddr("")


def test_a_connection_refused_by_the_guard_sends_nothing(monkeypatch):
    monkeypatch.setenv(loopback_guard.ALLOWED, ONLY_127_0_0_1)
    calls = []
    monkeypatch.setattr(loopback_guard, "original_connect", lambda *a: calls.append(a))
    monkeypatch.setattr(loopback_guard, "original_connect_ex", lambda *a: calls.append(a))
    with socket.socket() as sock:
        for address in [("127.0.0.2", 80), ("127.0.0.3", 80), ("::ffff:127.0.0.2", 80), ("forbidden.invalid", 80)]:
            with pytest.raises(LoopbackGuardError):
                sock.connect(address)
            with pytest.raises(LoopbackGuardError):
                sock.connect_ex(address)
        sock.connect(("127.0.0.1", 9))  # reaches the (spied) real connect
    assert len(calls) == 1


# --------------------------------------------------------------------------- child processes


def test_the_session_hands_the_guard_to_children():
    assert os.environ[loopback_guard.FLAG] == "1"
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == loopback_guard.SITE_DIR


def test_a_child_process_is_guarded(loopback_server):
    report = run_probe_in_child(loopback_server)
    assert report["pid"] != os.getpid()
    assert_guarded(report)


def test_a_child_given_a_whole_new_environment_is_guarded(loopback_server):
    report = run_probe_in_child(loopback_server, env={"PATH": os.environ.get("PATH", "")})
    assert report["flag"] == "1"
    assert_guarded(report)


def test_a_grandchild_given_an_empty_environment_is_guarded(loopback_server):
    code = PROBE_SOURCE + (
        "\nimport subprocess, sys\n"
        f"child = {PROBE_SOURCE!r} + 'print(json.dumps(probe({loopback_server})))'\n"
        "print(subprocess.run([sys.executable, '-c', child], env={}, capture_output=True, text=True,"
        " check=True).stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_guarded(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_child_whose_guard_cannot_load_fails_closed(tmp_path, monkeypatch):
    (tmp_path / "loopback_guard.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "sitecustomize.py").write_text((Path(loopback_guard.SITE_DIR) / "sitecustomize.py").read_text())
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    # Popen's own guard would put the real site directory first again: this child gets env as written.
    monkeypatch.setattr(subprocess.Popen, "__init__", loopback_guard.original_popen_init)
    done = subprocess.run([sys.executable, "-c", "print('ran unguarded')"], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "ran unguarded" not in done.stdout
    assert "loopback guard: could not be installed" in done.stderr


# --------------------------------------------------------------------------- Beam workers


def test_a_multiprocessing_direct_runner_worker_is_guarded(loopback_server, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from shard_samples import MULTIPROCESS

    probe = probe_function()
    out = tmp_path / "reports"
    with beam.Pipeline(options=PipelineOptions(MULTIPROCESS)) as pipeline:
        (
            pipeline
            | beam.Create([loopback_server])
            | beam.Map(probe)
            | beam.Map(json.dumps)
            | beam.io.WriteToText(str(out), shard_name_template="")
        )
    reports = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(reports) == 1
    assert reports[0]["pid"] != os.getpid(), "the probe ran in a worker process"
    assert_guarded(reports[0])
