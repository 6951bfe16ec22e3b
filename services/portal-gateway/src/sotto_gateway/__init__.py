"""Portal gateway: the only HTTP surface of Sotto."""
