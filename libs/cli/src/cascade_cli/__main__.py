"""``python -m cascade_cli`` == ``cascade``."""

from cascade_cli.main import cli_entry

cli_entry()
