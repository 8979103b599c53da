"""Item titles from the registry's ``items.parquet`` (display only; never required)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from cascade_core.errors import NotFoundError
from cascade_core.registry import Registry


def load_titles(artifacts_dir: str | Path | None, version: str | None) -> tuple[dict[str, str], str | None]:
    """``({item_id: title}, None)``, or ``({}, reason)`` when the registry or catalog is unavailable."""
    try:
        path = Registry(artifacts_dir).file(version, "items")
    except (NotFoundError, OSError, ValueError) as e:
        return {}, str(e)
    if not path.is_file():
        return {}, f"{path} missing"
    df = pd.read_parquet(path, columns=["item_id", "title"])
    return dict(zip(df["item_id"].astype(str), df["title"].astype(str))), None
