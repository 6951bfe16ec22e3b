"""Sotto shared runtime kit."""
