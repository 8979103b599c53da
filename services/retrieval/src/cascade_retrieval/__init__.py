"""cascade-retrieval."""
