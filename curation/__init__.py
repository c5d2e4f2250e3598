"""Shared vocabulary of the curation system: records, readers, fetcher, media, models."""

__version__ = "0.1.0"
