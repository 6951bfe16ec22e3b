"""The `sotto` operations command."""
