"""Candidate column names shared by the router's stages."""

from __future__ import annotations

# Source-specific score from candidate generation (inner product for "ann", log-popularity, ...).
RETRIEVAL_SCORE = "retrieval_score"
# Candidate source per item ("ann", "popular", ...): returned to the caller as ``source``.
SOURCE = "source"
# The ordering score. Sources set it to their score clamped non-increasing along their order, so a
# pipeline whose scorer failed keeps retrieval order; RankingScorer replaces it with ranker scores.
SCORE = "score"
# float32 [n, n_features] ranker input matrix.
FEATURES = "features"
# int32 1-based position, set by the selector.
RANK = "rank"
# Interleaved lists: name of the arm (variant) that contributed each item, set by the selector.
TEAM = "team"
