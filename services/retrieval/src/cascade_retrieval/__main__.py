"""``python -m cascade_retrieval`` runs the service; ``--print-pipeline`` prints its stage tree."""

from __future__ import annotations

import sys

from cascade_platform.server import main as serve_main


def main() -> None:
    if "--print-pipeline" in sys.argv[1:]:
        from cascade_retrieval.pipeline import pipeline_tree

        print(pipeline_tree())
        return
    from cascade_retrieval.service import RetrievalApp
    from cascade_retrieval.settings import RetrievalSettings

    serve_main(RetrievalApp, RetrievalSettings)


if __name__ == "__main__":
    main()
