"""Synthetic inputs (images, pairs, WARCs, text) served on loopback for the demo, tests and benchmarks; not part of the product's vocabulary."""
