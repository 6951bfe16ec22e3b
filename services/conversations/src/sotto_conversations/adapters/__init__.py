"""I/O adapters: MongoDB, broker publishing, external servers."""
