"""Bucket tooling: the seed layout, and safe, fast pull/push between a folder and a prefix."""
