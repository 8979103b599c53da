"""``python -m cascade_router`` serves RecommendationService; ``--print-pipeline`` prints its stages."""

from __future__ import annotations

import argparse

from cascade_platform.server import main
from cascade_platform.settings import load_settings

from cascade_router.app import RouterApp
from cascade_router.settings import RouterSettings


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cascade_router", description=__doc__)
    parser.add_argument("--print-pipeline", action="store_true", help="print the pipeline tree and exit")
    args = parser.parse_args(argv)
    if args.print_pipeline:
        settings = load_settings(RouterSettings)
        print(RouterApp(settings).pipeline.tree())
        return
    main(RouterApp, RouterSettings)


if __name__ == "__main__":
    run()
