"""An exception that names why a unit of input failed, with one of a fixed set of reasons.

The pipelines turn it into a dead letter whose reason is ``reason`` and whose detail is
``detail``; a reason outside the subclass's ``reasons`` is a programming error.
"""

from __future__ import annotations

from typing import ClassVar


class NamedFailure(Exception):
    """A failure with a snake_case ``reason`` (one of ``reasons``) and a human-readable ``detail``."""

    reasons: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, reason: str, detail: str = ""):
        if reason not in self.reasons:
            raise ValueError(f"unknown {type(self).__name__} reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
