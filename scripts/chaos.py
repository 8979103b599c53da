"""`make chaos`: kill -9 and restart every service, the stream worker, Redis and the broker under load.

A thin entry point: the suite lives in :mod:`cascade_cli.chaos` (``python -m cascade_cli.chaos --help``).
The last line printed is ``chaos: requests=N failed=N degraded=N events_produced=N lost=N duplicated=N``.
"""

from __future__ import annotations

import sys

from cascade_cli.chaos import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
