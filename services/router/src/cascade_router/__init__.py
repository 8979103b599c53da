"""cascade-router."""
