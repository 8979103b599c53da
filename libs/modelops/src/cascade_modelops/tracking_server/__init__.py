"""A local MLflow tracking server in its own environment (SQLite backend, local artifact store).

``mlflow`` cannot be installed into the project's pinned venv (see :mod:`cascade_modelops.mlflow_sync`),
so — like Triton in ``.tools/triton`` — the real server gets a separate venv under
``$CASCADE_MLFLOW_HOME`` (default ``.tools/mlflow``) with exact pins (``requirements.txt`` here)::

    python -m cascade_modelops.tracking_server setup            # idempotent; re-run is a no-op
    python -m cascade_modelops.tracking_server serve [--port 5000] [--data-dir DIR]

``serve`` runs ``mlflow server`` with ``--backend-store-uri sqlite:///DIR/mlflow.db`` (MLflow's
SQLAlchemy tracking + model-registry store) and ``--artifacts-destination DIR/mlruns`` (proxied
artifact uploads), ``DIR`` defaulting to ``$CASCADE_DATA_DIR`` (``./data``). Then
``export CASCADE_MLFLOW_TRACKING_URI=http://127.0.0.1:5000``. In a cluster, run MLflow with a
PostgreSQL backend store instead and point the same variable at it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")


class TrackingServerError(RuntimeError):
    """The local MLflow environment is missing or the server failed; the message says what to run."""


def mlflow_home() -> Path:
    return Path(os.environ.get("CASCADE_MLFLOW_HOME", ".tools/mlflow")).resolve()


def _stamp() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + Path(__file__).read_bytes()).hexdigest()


def mlflow_bin(home: Path | None = None) -> Path:
    home = home or mlflow_home()
    exe = home / "venv" / "bin" / "mlflow"
    stamp = home / ".stamp"
    if not (exe.is_file() and stamp.is_file() and stamp.read_text().strip() == _stamp()):
        raise TrackingServerError(f"MLflow environment missing or outdated in {home}: run "
                                  "`python -m cascade_modelops.tracking_server setup`")
    return exe


def setup(home: Path | None = None, python: str | None = None) -> Path:
    """Create ``home/venv`` with the pinned MLflow server packages (no-op when up to date)."""
    home = home or mlflow_home()
    try:
        return mlflow_bin(home)
    except TrackingServerError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    (home / ".stamp").unlink(missing_ok=True)
    venv = home / "venv"
    if not (venv / "bin" / "python").is_file():
        base = python or getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([str(venv / "bin" / "mlflow"), "--version"], check=True, stdout=subprocess.DEVNULL)
    (home / ".stamp").write_text(_stamp() + "\n")
    return mlflow_bin(home)


def server_command(port: int, data_dir: Path, home: Path | None = None, host: str = "127.0.0.1") -> list[str]:
    data_dir = Path(data_dir).resolve()
    return [
        str(mlflow_bin(home)), "server",
        "--host", host, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{data_dir / 'mlflow.db'}",
        "--artifacts-destination", str(data_dir / "mlruns"),
        "--serve-artifacts",
    ]


@dataclass
class TrackingServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM its process group (the server forks uvicorn workers), SIGKILL after ``timeout_s``."""
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait(10)


def start(port: int, data_dir: Path, log_path: Path, home: Path | None = None,
          ready_timeout_s: float = 120.0) -> TrackingServer:
    """Start ``mlflow server`` in its own session and wait until ``/health`` answers."""
    cmd = server_command(port, data_dir, home)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = TrackingServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingServerError(f"mlflow server exited with {proc.returncode}; see {log_path}:\n"
                                      f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise TrackingServerError(f"mlflow server not healthy on {server.url} after {ready_timeout_s}s; see {log_path}")
