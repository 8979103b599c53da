"""cascade-platform."""
