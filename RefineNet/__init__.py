"""The RefineNet pack: its guide's scripts, model.py and config.py (see README.md)."""
