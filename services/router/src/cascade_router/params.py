"""Keys of ``Query.params``: per-request values set by the servicer or a stage for later stages."""

from __future__ import annotations

# Set by the servicer from the experiment assignment.
VARIANT = "variant"
# The full cascade_router.experiments.Assignment of the request.
ASSIGNMENT = "assignment"
# Ranker version the variant asks for ("" = the ranking service's default).
RANKER_VERSION = "ranker_version"
# Candidates asked from retrieval for this request (absent = the router's CASCADE_NUM_CANDIDATES).
NUM_CANDIDATES = "num_candidates"
# Interleave requests: tuple of the two arms (cascade_router.experiments.Variant), set by the servicer.
INTERLEAVE_ARMS = "interleave_arms"
# Set by RankingScorer for interleave requests: {arm name: float32 scores of the scored candidates}.
ARM_SCORES = "arm_scores"
# Set by RankingScorer for interleave requests: {arm name: registry version that scored it}.
ARM_VERSIONS = "arm_versions"
# Set by RankingScorer: the version that actually produced the scores.
SCORED_MODEL_VERSION = "scored_model_version"
# Set by RankingScorer before it calls ranking: the CandidateSet it scores (with the feature matrix),
# read by the shadow side effect so the shadow ranker sees exactly the same rows.
SCORED_CANDIDATES = "scored_candidates"
# Set by RankingScorer on success: float32 scores of SCORED_CANDIDATES (the served ranker's).
PRIMARY_SCORES = "primary_scores"
# Set by the servicer: an asyncio.Future resolved with the RecommendResponse once it is built (None
# when the request failed). Side effects await it, so they never run ahead of the answer.
RESPONDED = "responded"
# Set by a batch-prediction source: the model version that computed the served batch list.
BATCH_MODEL_VERSION = "batch_model_version"
# Set by the servicer when load shedding shrank this request (cascade_platform.shedding): the quality
# factor (< 1). Retrieval was asked for fewer candidates, interleaving and shadow ranking are skipped.
QUALITY_FACTOR = "quality_factor"
