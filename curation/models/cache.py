"""One loaded model per spec and process: what every model handle's ``load_cached`` stands on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """Values built at first use and shared by the process's threads (Beam workers run several)."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value of ``key``, built with ``build()`` the first time (under the lock: built once)."""
        with self._lock:
            if key not in self._values:
                self._values[key] = build()
            return self._values[key]

    def discard(self, value: V) -> None:
        """Forgets every key holding ``value`` (a closed model), so the next ``get`` builds afresh."""
        with self._lock:
            for key in [key for key, held in self._values.items() if held is value]:
                del self._values[key]
