"""Files on disk: atomic writes, raw bins, legacy .info lists, result folders, JSON."""
