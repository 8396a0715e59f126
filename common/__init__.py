"""What the segzoo packs share, grouped by job (files, data, runtime, eval, weights, summary,
pipeline, fp16, viz); the modules at this level are the commands. See docs/ARCHITECTURE.md."""
