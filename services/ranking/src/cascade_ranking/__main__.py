"""``python -m cascade_ranking`` runs the ranking service."""

from __future__ import annotations

from cascade_platform.server import main
from cascade_ranking.service import RankingApp
from cascade_ranking.settings import RankingSettings

if __name__ == "__main__":
    main(RankingApp, RankingSettings)
