"""Generators of new samples (captions, QA, renderings, packing)."""
