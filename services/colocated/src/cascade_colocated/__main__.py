"""``python -m cascade_colocated`` serves RecommendationService in co-located mode (settings from
``CASCADE_*``, see :mod:`cascade_colocated.settings`); ``--print-pipeline`` prints its stages."""

from __future__ import annotations

import argparse

from cascade_platform.server import main
from cascade_platform.settings import load_settings

from cascade_colocated.app import ColocatedApp
from cascade_colocated.settings import ColocatedSettings


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cascade_colocated", description=__doc__)
    parser.add_argument("--print-pipeline", action="store_true", help="print the pipeline tree and exit")
    args = parser.parse_args(argv)
    if args.print_pipeline:
        settings = load_settings(ColocatedSettings)
        print(ColocatedApp(settings).pipeline.tree())
        return
    main(ColocatedApp, ColocatedSettings)


if __name__ == "__main__":
    run()
