"""Small synthetic text data for the deep coordinate (Parquet, raymix's row convention)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

WORDS = [f"w{k}" for k in range(24)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def write_text_rows(path: Path, n: int, seed: int, start_uid: int = 0, dim: int = 6) -> None:
    """Rows whose label depends on the title's words and on a wide feature."""
    rng = np.random.default_rng(seed)
    good = set(WORDS[:8])
    titles, idx, val, labels = [], [], [], []
    for _ in range(n):
        words = list(rng.choice(WORDS + ["zzz"], size=rng.integers(1, 6)))
        k = int(rng.integers(1, 3))
        cols = sorted(rng.choice(dim, size=k, replace=False).tolist())
        vals = rng.uniform(0.5, 1.5, size=k).tolist()
        score = 1.5 * sum(w in good for w in words) - 1.0 + (1.0 if 0 in cols else 0.0)
        labels.append(int(rng.uniform() < 1 / (1 + np.exp(-score))))
        titles.append(" ".join(words))
        idx.append(cols)
        val.append(vals)
    table = pa.table(
        {
            "uid": pa.array(np.arange(start_uid, start_uid + n, dtype=np.int64)),
            "response": pa.array(labels, pa.int64()),
            "weight": pa.array(np.ones(n, np.float32)),
            "wide_indices": pa.array(idx, pa.list_(pa.int64())),
            "wide_values": pa.array(val, pa.list_(pa.float32())),
            "title": pa.array(titles),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def small_deep_recipe(root: str, output: str, *, steps: int, passes: int):
    """A small deep-only recipe on :func:`text_data` at ``root`` (a path or a URI)."""
    from raymix import Data, DeepEffect, Recipe

    deep = DeepEffect(
        name="deep",
        vocab=f"{root}/vocab.txt",
        feature_bag="wide",
        embedding_size=8,
        filters=6,
        window_sizes=[2, 3],
        max_len=5,
        optimizer="adam",
        learning_rate=0.01,
        steps=steps,
        batch_size=32,
        seed=3,
    )
    data = Data(train=f"{root}/train", validation=f"{root}/validation")
    return Recipe(data=data, coordinates=[deep], passes=passes, output=output)


@pytest.fixture(scope="session")
def text_data(tmp_path_factory) -> Path:
    """``train/`` (400 rows), ``validation/`` (200 rows) and ``vocab.txt`` (w0..w19: w20+ are unknown)."""
    root = tmp_path_factory.mktemp("deep-text")
    write_text_rows(root / "train" / "part-00000.parquet", 400, seed=1)
    write_text_rows(root / "validation" / "part-00000.parquet", 200, seed=2, start_uid=10_000)
    (root / "vocab.txt").write_text("".join(f"{t}\n" for t in SPECIAL + WORDS[:20]))
    return root
