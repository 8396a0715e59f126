"""The 3D_HRNet pack: its guide's scripts, model.py and config.py (see README.md)."""
