"""Notifier: renders generic notices and sends each to exactly one recipient."""
