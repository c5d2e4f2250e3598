"""Shard writing, the manifest schema, its verification and the trainer-side reader."""
