"""Helpers shared by the segzoo packs: bin I/O, inference runner, ATC, metrics, datasets."""
