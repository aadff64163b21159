"""Sweeps: a TOML config (config.py) -> a grid of cells (grid.py, pure) -> directions per fold
(resolve.py) -> the resumable, shardable runner (run.py); merging shard run dirs (merge.py) and
tables out of a run dir (export.py)."""
