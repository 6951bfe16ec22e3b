"""Audit: append-only, hash-chained record of every delivery and access."""
