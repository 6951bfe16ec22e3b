"""Conversations service: owns threads, messages, notes, tasks and practice settings."""
