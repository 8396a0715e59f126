"""Checkpoints: safe reading and strict loading, the key manifests, demo weights."""
