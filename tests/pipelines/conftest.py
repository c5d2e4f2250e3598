"""Fixtures for pipeline tests: a loopback image server, its input parquet, a Beam job service."""

import socket
import subprocess
import sys
import time

import pytest

from curation.config import load_config
from pipelines.pairs import PairsConfig
from sampledata.pairs import ImageServer, make_pairs_cases, write_pairs_parquet

TEST_CONFIG = """
dataset: pairs-test
fetch:
  connect_timeout: 2.0
  read_timeout: 0.5
  retries: 1
  backoff: 0.05
  max_bytes: 5000000
  allow_networks: ["127.0.0.1/32"]
download:
  concurrency: 8
  batch_size: 8
image:
  max_pixels: 50000000
filters:
  clip:
    threshold: null
    keep_fraction: 0.9
clip:
  model: curation-tiny
  batch_size: 8
shards:
  max_samples: 7
"""


@pytest.fixture(scope="session")
def image_server():
    with ImageServer(slow_seconds=1.5) as server:
        yield server
        assert server.forbidden_hits == 0, "the forbidden host was contacted"


@pytest.fixture(scope="session")
def pairs_input(image_server, tmp_path_factory):
    """(parquet path, cases) of a generated LAION-style input, split over two files."""
    cases = make_pairs_cases(image_server.base_url, n_good=24, seed=7)
    directory = tmp_path_factory.mktemp("pairs-input")
    half = len(cases) // 2
    write_pairs_parquet(cases[:half], str(directory / "part-0.parquet"), rows_per_group=5)
    write_pairs_parquet(cases[half:], str(directory / "part-1.parquet"), rows_per_group=5)
    return str(directory / "*.parquet"), cases


@pytest.fixture(scope="session")
def pairs_config():
    return load_config(PairsConfig, text=TEST_CONFIG)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def job_service():
    """Beam's Python job service on loopback, as a PortableRunner's job endpoint."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("Beam job service did not start")
    yield f"localhost:{port}"
    process.terminate()
    process.wait(timeout=30)
