"""cascade-colocated: the router's pipeline with retrieval, features and ranking in one process."""
