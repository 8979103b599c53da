"""``python -m cascade_cli`` == ``cascade``."""

from cascade_cli.main import main

raise SystemExit(main())
