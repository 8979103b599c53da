"""Item -> category lookup from the catalog (``items.parquet`` of the served registry version)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from cascade_core.errors import NotFoundError
from cascade_core.registry import Registry


def load_catalog(path: Path | str) -> dict[str, str]:
    """``item_id -> category`` from a parquet file with those two columns."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: catalog file missing (expected items.parquet with item_id, category)")
    t = pq.read_table(p)
    missing = [c for c in ("item_id", "category") if c not in t.column_names]
    if missing:
        raise ValueError(f"{p}: catalog lacks columns {missing} (has {t.column_names})")
    ids = [str(x) for x in t.column("item_id").to_pylist()]
    cats = [str(x) if x is not None else "unknown" for x in t.column("category").to_pylist()]
    return dict(zip(ids, cats))


def catalog_path(artifacts_dir: Path | str | None, version: str | None, override: Path | None = None) -> Path:
    """``override`` when given, else the registry version's items file (NotFoundError says how to fix)."""
    if override is not None:
        return Path(override)
    reg = Registry(artifacts_dir)
    try:
        return reg.file(version, "items")
    except NotFoundError as e:
        raise NotFoundError(f"{e} — or point CASCADE_ITEMS_PATH at an items.parquet") from None
