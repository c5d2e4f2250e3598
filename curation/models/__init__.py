"""Model handles: specs that load on the worker, once per process."""
