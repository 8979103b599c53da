"""cascade-cli."""
