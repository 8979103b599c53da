"""cascade-gateway."""
