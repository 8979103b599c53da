"""cascade-core."""
