"""Installs the loopback guard at the start of every Python process the test suite starts.

``tests/conftest.py`` puts this directory first on ``PYTHONPATH`` and sets
``CURATION_TEST_LOOPBACK_ONLY=1``; any Python process that inherits them (a Beam worker, the
job service, a decoder child, ``python -c`` in a test) imports this module at startup.
A guard that cannot be installed stops the process: it fails closed, never silently open.
Then the ``sitecustomize`` this one shadows, if there is one, runs as it would have.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _install_guard() -> None:
    if os.environ.get("CURATION_TEST_LOOPBACK_ONLY") != "1":
        return
    try:
        import loopback_guard

        loopback_guard.install()
    except BaseException as error:  # site would print an Exception and carry on unguarded
        raise SystemExit(f"loopback guard: could not be installed in this process: {error!r}") from error


def _run_shadowed_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or os.path.abspath(spec.origin or "") == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_install_guard()
_run_shadowed_sitecustomize()
