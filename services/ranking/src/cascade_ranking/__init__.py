"""cascade-ranking."""
