"""The run's summary: one row per pack (parity, verdict), Markdown and JSON tables."""
