"""MovieLens 100k -> GDMix's movieLens example data, reproduced exactly but seeded.

Follows GDMix's ``scripts/download_process_movieLens_data.py`` (reference notes §6):

- one row per line of ``u.data``, ``uid`` = 0..99999 in file order, ``weight`` = 1.0,
  label ``response = 1 if rating > 3 else 0`` (positive rate 0.55375);
- user features (index space ``USER_FEATURES``): ``age/100`` at 0, gender ``M``/``F`` at 1/2
  (value 1), occupation at 3..23 (value 1); movie features (``MOVIE_FEATURES``): the 19 genre
  flags at 0..18 and ``release year / 2000`` at 19 (absent for movie 267, which has no date);
- bags: ``global`` (44) = user features then movie features shifted by 24; ``per_user`` (20) =
  the MOVIE features (a per-user model learns the user's taste in movies); ``per_movie`` (24) =
  the USER features. Entries with ``|v| <= 1e-6`` (and NaN) are dropped; indices are sorted;
- the split: ``np.random.RandomState(seed).uniform(0, 1, n) < train_fraction`` per rating row,
  the same mask for every dataset (GDMix used an unseeded ``np.random.uniform``).

Differences from GDMix, on purpose: files are named ``part-00000.<fmt>``; one shared
``metadata/tensor_metadata.json`` (with ``weight``) instead of one per bag; the ``detext/`` data
keeps raymix names (``global`` bag unshifted, ``title`` string, int ``response``); the vocabulary
is built from the TRAINING titles only, in a deterministic order; and title cleaning collapses
all whitespace (GDMix left a double space where a token was pure punctuation, e.g. "a - b").
"""

from __future__ import annotations

import os
import re
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raymix.data.metadata import (
    Metadata,
    TensorSpec,
    load_metadata,
    write_feature_list,
)
from raymix.data.source import list_data_files, read_data_file
from raymix.data.tfrecord.tables import write_tfrecord_file
from raymix.errors import DataError
from raymix.files import atomic_path, write_text

__all__ = [
    "GENRES",
    "MOVIE_FEATURES",
    "USER_FEATURES",
    "clean_title",
    "convert_movielens",
    "movielens_split_summary",
]

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Childrens", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film_Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci_Fi", "Thriller", "War", "Western",
)  # fmt: skip
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other",
    "programmer", "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
USER_FEATURES = ("age", "M", "F", *OCCUPATIONS)
MOVIE_FEATURES = (*GENRES, "release_date")
BAGS = {
    "global": USER_FEATURES + MOVIE_FEATURES,
    "per_user": MOVIE_FEATURES,
    "per_movie": USER_FEATURES,
}
SPLITS = {"trainingData": True, "validationData": False}
FORMATS = ("tfrecord", "parquet")
VOCAB_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_ID_COLUMNS = ["uid", "user_id", "movie_id", "weight"]
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def metadata() -> Metadata:
    """The shared ``metadata/tensor_metadata.json`` of the three GDMix datasets."""
    bags = tuple(TensorSpec(b, "float", (len(f),), True) for b, f in BAGS.items())
    return Metadata(bags + _ids(), (TensorSpec("response", "int"),))


def detext_metadata() -> Metadata:
    bag = TensorSpec("global", "float", (len(BAGS["global"]),), True)
    return Metadata((bag, TensorSpec("title", "string"), *_ids()), (TensorSpec("response", "int"),))


def _ids() -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("uid", "long"),
        TensorSpec("weight", "float"),
        TensorSpec("user_id", "long"),
        TensorSpec("movie_id", "long"),
    )


def clean_title(title: str) -> str:
    """GDMix's title cleaning: drop a trailing "(...)", lowercase, punctuation -> spaces."""
    title = re.sub(r"\([^)]*\)$", "", title).lower()
    return " ".join(_PUNCT.sub(" ", title).split())


def convert_movielens(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    seed: int = 0,
    fmt: str = "tfrecord",
    train_fraction: float = 0.8,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert the raw ``ml-100k`` directory ``source`` into GDMix's layout under ``dest``.

    Writes ``{global,per_user,per_movie}/{trainingData,validationData}/part-00000.<fmt>``,
    ``metadata/tensor_metadata.json``, ``featureList/{global,per_user,per_movie}`` and
    ``detext/{trainingData,validationData}/part-00000.<fmt>``, ``detext/vocab.txt``,
    ``detext/metadata/tensor_metadata.json``. Every file is written atomically and the same
    inputs and seed give byte-identical files. A non-empty ``dest`` is refused unless
    ``overwrite``. Returns a summary: row counts, positives, users, movies, files, seconds.
    """
    start = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(
            f"The 'fmt' parameter of convert_movielens must be one of {list(FORMATS)}. Got {fmt!r} instead."
        )
    if not (isinstance(train_fraction, int | float) and 0 < train_fraction < 1):
        raise ValueError(
            "The 'train_fraction' parameter of convert_movielens must be a float in the range "
            f"(0, 1). Got {train_fraction!r} instead."
        )
    source, dest = Path(source), Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError("output exists and is not a directory", str(dest))
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise DataError("output directory is not empty (pass overwrite=True)", str(dest))

    ratings = _read_ratings(source / "u.data")
    users = _read_users(source / "u.user")
    movies, titles = _read_items(source / "u.item")
    user_id, movie_id, rating = ratings.T
    _check_known(user_id, users, source / "u.data", "u.user", "user_id")
    _check_known(movie_id, movies, source / "u.data", "u.item", "movie_id")

    n = len(ratings)
    base = {
        "uid": pa.array(np.arange(n, dtype=np.int64)),
        "user_id": pa.array(user_id),
        "movie_id": pa.array(movie_id),
        "weight": pa.array(np.ones(n, dtype=np.float32)),
    }
    response = pa.array((rating > 3).astype(np.int64))
    dense = {
        "global": np.hstack([users[user_id], movies[movie_id]]),
        "per_user": movies[movie_id],
        "per_movie": users[user_id],
    }
    train = np.random.RandomState(seed).uniform(0, 1, n) < train_fraction

    meta = metadata()
    extra = {"numberOfTrainingSamples": int(train.sum())}
    files: list[Path] = []
    tables = {}
    for bag, matrix in dense.items():
        idx, val = _sparse_columns(matrix)
        tables[bag] = pa.table(
            {**base, f"{bag}_indices": idx, f"{bag}_values": val, "response": response}
        )
        for split, is_train in SPLITS.items():
            part = tables[bag].filter(pa.array(train == is_train))
            files.append(
                _write(part, dest / bag / split, meta, [bag, *_ID_COLUMNS, "response"], fmt)
            )
        write_feature_list(dest / "featureList" / bag, [(f, "") for f in BAGS[bag]])
        files.append(dest / "featureList" / bag)
    meta.write(dest / "metadata" / "tensor_metadata.json", extra)
    files.append(dest / "metadata" / "tensor_metadata.json")

    # DeText: the global bag plus the cleaned movie title.
    clean = [clean_title(t) for t in titles]
    title_col = pa.array(clean).take(pa.array(movie_id))
    dmeta = detext_metadata()
    detext = tables["global"].append_column("title", title_col)
    for split, is_train in SPLITS.items():
        part = detext.filter(pa.array(train == is_train))
        files.append(_write(part, dest / "detext" / split, dmeta, None, fmt))
    dmeta.write(dest / "detext" / "metadata" / "tensor_metadata.json", extra)
    vocab = _vocabulary(clean, np.bincount(movie_id[train], minlength=len(clean)))
    write_text(dest / "detext" / "vocab.txt", "".join(f"{token}\n" for token in vocab))
    files += [dest / "detext" / "metadata" / "tensor_metadata.json", dest / "detext" / "vocab.txt"]
    if overwrite:
        _remove_other_format(dest, fmt)

    positive = rating > 3
    return {
        "rows": n,
        "train_rows": int(train.sum()),
        "validation_rows": int((~train).sum()),
        "positives": int(positive.sum()),
        "train_positives": int(positive[train].sum()),
        "validation_positives": int(positive[~train].sum()),
        "positive_rate": float(positive.mean()),
        "users": int(len(np.unique(user_id))),
        "movies": int(len(np.unique(movie_id))),
        "train_users": int(len(np.unique(user_id[train]))),
        "train_movies": int(len(np.unique(movie_id[train]))),
        "vocab_size": len(vocab),
        "seed": seed,
        "format": fmt,
        "dest": str(dest),
        "files": sorted(str(p.relative_to(dest)) for p in files),
        "seconds": time.perf_counter() - start,
    }


def movielens_split_summary(dest: str | os.PathLike) -> dict[str, int]:
    """Row and positive counts of the converted ``global`` splits, read back from the files."""
    dest = Path(dest)
    meta = load_metadata(dest / "metadata" / "tensor_metadata.json")
    out: dict[str, int] = {}
    for split, name in (("trainingData", "train"), ("validationData", "validation")):
        labels = [
            read_data_file(f, meta, ["response"]).column("response").to_numpy()
            for f in list_data_files(dest / "global" / split)
        ]
        y = np.concatenate(labels)
        out[f"{name}_rows"], out[f"{name}_positives"] = len(y), int(y.sum())
    return out


# ----------------------------------------------------------------------------- reading


def _lines(path: Path, encoding: str) -> list[str]:
    try:
        return path.read_text(encoding=encoding).splitlines()
    except FileNotFoundError:
        raise DataError("MovieLens file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", str(path)) from None


def _read_ratings(path: Path) -> np.ndarray:
    """``u.data`` as an int64 array ``[n, 3]``: user_id, movie_id, rating (timestamp dropped)."""
    rows = [line.split("\t") for line in _lines(path, "ascii")]
    for i, r in enumerate(rows):
        if len(r) != 4:
            raise DataError(f"expected 4 tab-separated fields, got {len(r)}", str(path), row=i + 1)
    if not rows:
        raise DataError("the file is empty", str(path))
    for i, r in enumerate(rows):
        if not all(v.strip().isdecimal() for v in r[:3]):
            raise DataError(f"expected non-negative integers, got {r[:3]}", str(path), row=i + 1)
    return np.array([r[:3] for r in rows], dtype=np.int64)


def _read_users(path: Path) -> np.ndarray:
    """User features by user id: ``[max_id + 1, 24]`` in ``USER_FEATURES`` order (NaN if absent)."""
    rows = [line.split("|") for line in _lines(path, "iso-8859-1")]
    index = {v: i for i, v in enumerate(USER_FEATURES)}
    ids = _ids_of(rows, 5, path)
    out = np.full((ids.max() + 1, len(USER_FEATURES)), np.nan)
    for i, (uid, r) in enumerate(zip(ids, rows, strict=True)):
        out[uid] = 0.0
        try:
            out[uid, 0] = float(r[1]) / 100.0
        except ValueError:
            raise DataError(f"age {r[1]!r} is not a number", str(path), row=i + 1) from None
        for value, allowed in ((r[2], ("M", "F")), (r[3], OCCUPATIONS)):
            if value not in allowed:
                raise DataError(f"{value!r} is not one of {list(allowed)}", str(path), row=i + 1)
            out[uid, index[value]] = 1.0
    return out


def _read_items(path: Path) -> tuple[np.ndarray, list[str]]:
    """Movie features by movie id ``[max_id + 1, 20]`` (MOVIE_FEATURES order) and titles."""
    rows = [line.split("|") for line in _lines(path, "iso-8859-1")]
    ids = _ids_of(rows, 5 + len(GENRES), path)
    out = np.full((ids.max() + 1, len(MOVIE_FEATURES)), np.nan)
    titles = [""] * (ids.max() + 1)
    for i, (mid, r) in enumerate(zip(ids, rows, strict=True)):
        titles[mid] = r[1]
        try:
            out[mid, : len(GENRES)] = [float(v) for v in r[5:]]
            # GDMix: float(str(x).split('-')[-1]) / 2000, NaN when the date is missing.
            out[mid, -1] = float(r[2].split("-")[-1]) / 2000.0 if r[2] else np.nan
        except ValueError as e:
            raise DataError(f"bad genre flag or release date: {e}", str(path), row=i + 1) from None
    return out, titles


def _ids_of(rows: list[list[str]], width: int, path: Path) -> np.ndarray:
    for i, r in enumerate(rows):
        if len(r) != width or not r[0].isdigit():
            raise DataError(
                f"expected {width} '|'-separated fields starting with an id", str(path), row=i + 1
            )
    if not rows:
        raise DataError("the file is empty", str(path))
    return np.array([int(r[0]) for r in rows], dtype=np.int64)


def _check_known(ids: np.ndarray, table: np.ndarray, path: Path, where: str, column: str) -> None:
    """Every id of ``u.data`` (``path``) must have a row in ``where`` (u.user / u.item)."""
    known = np.zeros(max(len(table), int(ids.max()) + 1), dtype=bool)
    known[: len(table)] = ~np.isnan(table).all(axis=1)
    unknown = ~known[ids]
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"{column} {int(ids[row])} is not in {where}", str(path), row=row + 1, column=column
        )


# ----------------------------------------------------------------------------- encoding


def _sparse_columns(matrix: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Row-wise sparse ``(indices, values)`` list arrays of ``|v| > 1e-6`` entries, sorted."""
    keep = np.abs(matrix) > 1e-6  # NaN compares False: a missing release date is dropped
    rows, cols = np.nonzero(keep)  # row-major: indices come out sorted within each row
    offsets = np.zeros(len(matrix) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(matrix)), out=offsets[1:])
    off = pa.array(offsets)
    return (
        pa.ListArray.from_arrays(off, pa.array(cols.astype(np.int64))),
        pa.ListArray.from_arrays(off, pa.array(matrix[rows, cols].astype(np.float32))),
    )


def _vocabulary(titles: list[str], train_rows_per_movie: np.ndarray) -> list[str]:
    """Special tokens, then tokens by descending count over TRAINING rows, then alphabetically."""
    counts: Counter[str] = Counter()
    for title, rows in zip(titles, train_rows_per_movie, strict=True):
        if rows:
            for token in title.split():
                counts[token] += int(rows)
    ranked = sorted((t for t in counts if t not in VOCAB_SPECIAL), key=lambda t: (-counts[t], t))
    return [*VOCAB_SPECIAL, *ranked]


def _write(table: pa.Table, directory: Path, meta: Metadata, columns, fmt: str) -> Path:
    path = directory / f"part-00000.{fmt}"
    if fmt == "tfrecord":
        write_tfrecord_file(table, path, meta, columns)
    else:
        schema = meta.arrow_schema(columns)
        table = table.select(schema.names).cast(schema)
        with atomic_path(path) as tmp:
            pq.write_table(table, str(tmp))
    return path


def _remove_other_format(dest: Path, fmt: str) -> None:
    """After an overwrite, delete the stale part file of the other format in our own layout."""
    for other in FORMATS:
        if other == fmt:
            continue
        for bag in (*BAGS, "detext"):
            for split in SPLITS:
                stale = dest / bag / split / f"part-00000.{other}"
                if stale.is_file():
                    stale.unlink()


def describe_conversion(summary: dict[str, Any]) -> str:
    """What :func:`convert_movielens` wrote, for a person: a few lines, not its dict."""
    return "\n".join(
        [
            f"wrote {summary['dest']} ({summary['format']}, {len(summary['files'])} files) "
            f"in {summary['seconds']:.1f} s",
            f"  {summary['rows']:,} ratings of {summary['users']:,} users on "
            f"{summary['movies']:,} movies; positive (rating > 3): {summary['positive_rate']:.1%}",
            f"  train {summary['train_rows']:,} rows ({summary['train_positives']:,} positive), "
            f"validation {summary['validation_rows']:,} rows "
            f"({summary['validation_positives']:,} positive); split seed {summary['seed']}",
            f"  title vocabulary: {summary['vocab_size']:,} tokens",
        ]
    )
