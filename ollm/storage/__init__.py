"""Snapshot files on disk: a self-describing format, atomic writes, a per-session index."""
