"""Judgments: each filter scores a record and keeps or drops it with a named reason."""
