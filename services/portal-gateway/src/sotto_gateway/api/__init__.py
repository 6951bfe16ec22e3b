"""HTTP layer: controllers, guards, dependencies, problem responses."""
