"""``python -m cascade_modelops.tracking_server setup|serve`` (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cascade_modelops.tracking_server import TrackingServerError, mlflow_home, server_command, setup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascade_modelops.tracking_server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="build the MLflow server venv (idempotent)")
    s.add_argument("--home", type=Path, default=None, help="default $CASCADE_MLFLOW_HOME or .tools/mlflow")
    v = sub.add_parser("serve", help="run mlflow server (SQLite store) in the foreground")
    v.add_argument("--home", type=Path, default=None)
    v.add_argument("--port", type=int, default=5000)
    v.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CASCADE_DATA_DIR", "data")))
    a = ap.parse_args(argv)
    home = a.home.resolve() if a.home else mlflow_home()
    try:
        if a.cmd == "setup":
            print(f"mlflow-env: ready ({setup(home)})")
            return 0
        a.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = server_command(a.port, a.data_dir, home)
    except TrackingServerError as e:
        print(f"tracking_server: {e}", file=sys.stderr)
        return 2
    print(f"MLflow on http://127.0.0.1:{a.port} (store {a.data_dir.resolve() / 'mlflow.db'}); "
          f"export CASCADE_MLFLOW_TRACKING_URI=http://127.0.0.1:{a.port}", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
