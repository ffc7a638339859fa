"""MovieLens 100k -> GDMix's movieLens data: exact preprocessing, determinism, layout."""

from __future__ import annotations

import filecmp
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from raymix.data.metadata import load_feature_list, load_metadata
from raymix.data.source import list_data_files, read_data_file
from raymix.datasets.movielens import (
    clean_title,
    convert_movielens,
    describe_conversion,
    movielens_split_summary,
)
from raymix.errors import DataError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ML = SHARED / "data" / "ml-100k"

# Typed out here from GDMix's script, independently of raymix.datasets.movielens.
OCCUPATIONS = [
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
]
GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Childrens",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film_Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci_Fi",
    "Thriller",
    "War",
    "Western",
]
USER = ["age", "M", "F", *OCCUPATIONS]
MOVIE = [*GENRES, "release_date"]
BAG_COLUMNS = {"global": USER + MOVIE, "per_user": MOVIE, "per_movie": USER}


@pytest.fixture(scope="module")
def raw():
    ratings = np.loadtxt(ML / "u.data", dtype=np.int64)[:, :3]
    users = {
        int(r[0]): r for r in (line.split("|") for line in (ML / "u.user").read_text().splitlines())
    }
    items = {
        int(r[0]): r
        for r in (line.split("|") for line in (ML / "u.item").read_text("iso-8859-1").splitlines())
    }
    return ratings, users, items


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("movielens")
    out = {
        "a": convert_movielens(ML, base / "a", seed=0),
        "b": convert_movielens(ML, base / "b", seed=0),
        "parquet": convert_movielens(ML, base / "parquet", seed=0, fmt="parquet"),
        "parquet2": convert_movielens(ML, base / "parquet2", seed=0, fmt="parquet"),
        "seed1": convert_movielens(ML, base / "seed1", seed=1, fmt="parquet"),
    }
    return base, out


@functools.lru_cache(maxsize=64)
def read(dest: Path, bag: str, split: str):
    meta = load_metadata(dest / "metadata" / "tensor_metadata.json")
    (path,) = list_data_files(dest / bag / split)
    return read_data_file(path, meta, [bag, "uid", "user_id", "movie_id", "weight", "response"])


def hand_features(user, item):
    """The user (24) and movie (20) feature dicts of GDMix's encoding, from raw rows."""
    u = {0: int(user[1]) / 100.0, USER.index(user[2]): 1.0, USER.index(user[3]): 1.0}
    m = {g: 1.0 for g, flag in enumerate(item[5:]) if flag == "1"}
    if item[2]:
        m[19] = float(item[2].split("-")[-1]) / 2000.0
    return u, m


def check_row(row, bag, u, m):
    expected = {"global": {**u, **{24 + k: v for k, v in m.items()}}, "per_user": m, "per_movie": u}
    want = sorted((k, v) for k, v in expected[bag].items() if abs(v) > 1e-6)
    assert row[f"{bag}_indices"] == [k for k, _ in want]
    np.testing.assert_array_equal(
        np.float32(row[f"{bag}_values"]), np.float32([v for _, v in want])
    )


def test_summary_counts(converted, raw):
    _, out = converted
    ratings = raw[0]
    mask = np.random.RandomState(0).uniform(0, 1, len(ratings)) < 0.8
    s = out["a"]
    assert s["rows"] == len(ratings) == 100_000
    assert s["positives"] == 55_375 and s["positive_rate"] == 0.55375
    assert s["train_rows"] == int(mask.sum()) == 79_959
    assert s["validation_rows"] == 100_000 - 79_959
    assert s["train_positives"] == int((ratings[mask, 2] > 3).sum())
    assert (s["users"], s["movies"], s["train_users"], s["train_movies"]) == (943, 1682, 943, 1648)
    assert s["seconds"] < 60, s["seconds"]  # about 4 s on 2 cores once TensorFlow is loaded
    for key in ("train_rows", "validation_rows", "train_positives", "validation_positives"):
        assert out["parquet"][key] == s[key]
    assert out["seed1"]["train_rows"] != s["train_rows"]


@pytest.mark.parametrize("which", ["a", "parquet"])
def test_split_files_match_the_mask(converted, raw, which):
    base, out = converted
    dest = base / which
    ratings = raw[0]
    mask = np.random.RandomState(0).uniform(0, 1, len(ratings)) < 0.8
    assert movielens_split_summary(dest) == {
        k: out[which][k]
        for k in ("train_rows", "train_positives", "validation_rows", "validation_positives")
    }
    for bag in BAG_COLUMNS:
        for split, rows in (("trainingData", mask), ("validationData", ~mask)):
            table = read(dest, bag, split)
            np.testing.assert_array_equal(table.column("uid").to_numpy(), np.flatnonzero(rows))
            np.testing.assert_array_equal(table.column("user_id").to_numpy(), ratings[rows, 0])
            np.testing.assert_array_equal(table.column("movie_id").to_numpy(), ratings[rows, 1])
            np.testing.assert_array_equal(
                table.column("response").to_numpy(), (ratings[rows, 2] > 3).astype(np.int64)
            )
            assert (table.column("weight").to_numpy() == 1.0).all()


def test_hand_checked_rows(converted, raw):
    base, _ = converted
    ratings, users, items = raw
    # uid 0 = first line of u.data: user 196 (49, M, writer) rates movie 242 (Kolya, released
    # 24-Jan-1997, Comedy) with 3 -> negative. uid 0 falls in the training split for seed 0.
    assert ratings[0].tolist() == [196, 242, 3]
    rows = {
        bag: read(base / "a", bag, "trainingData").slice(0, 1).to_pylist()[0] for bag in BAG_COLUMNS
    }
    assert rows["global"]["uid"] == 0 and rows["global"]["response"] == 0
    assert rows["global"]["global_indices"] == [0, 1, 23, 29, 43]
    np.testing.assert_array_equal(
        np.float32(rows["global"]["global_values"]), np.float32([0.49, 1, 1, 1, 1997 / 2000])
    )
    assert rows["per_user"]["per_user_indices"] == [5, 19]  # movie features: Comedy, date
    assert rows["per_movie"]["per_movie_indices"] == [0, 1, 23]  # user features: age, M, writer
    # More rows, each encoded by hand from the raw files: a positive one, movie 267 (no date).
    first_267 = int(np.flatnonzero(ratings[:, 1] == 267)[0])
    first_pos = int(np.flatnonzero(ratings[:, 2] > 3)[0])
    mask = np.random.RandomState(0).uniform(0, 1, len(ratings)) < 0.8
    for uid in (first_267, first_pos, 99_999):
        split = "trainingData" if mask[uid] else "validationData"
        position = int(np.flatnonzero(mask == mask[uid]).searchsorted(uid))
        user_id, movie_id, rating = ratings[uid].tolist()
        u, m = hand_features(users[user_id], items[movie_id])
        for bag in BAG_COLUMNS:
            row = read(base / "a", bag, split).slice(position, 1).to_pylist()[0]
            assert (row["uid"], row["user_id"], row["movie_id"]) == (uid, user_id, movie_id)
            assert row["response"] == int(rating > 3)
            check_row(row, bag, u, m)
    row = read(base / "a", "per_user", "trainingData" if mask[first_267] else "validationData")
    assert (
        19
        not in row.filter(row.column("uid").to_numpy() == first_267).to_pylist()[0][
            "per_user_indices"
        ]
    )


def test_every_row_matches_the_raw_files(converted, raw):
    base, _ = converted
    ratings, users, items = raw
    table = read(base / "parquet", "global", "validationData")
    for row in table.slice(0, 300).to_pylist():
        u, m = hand_features(users[row["user_id"]], items[row["movie_id"]])
        check_row(row, "global", u, m)
    nnz = np.diff(table.column("global_indices").combine_chunks().offsets.to_numpy())
    assert 5.5 < nnz.mean() < 6.8  # GDMix notes: about 6.13 per global row


def test_metadata_and_feature_lists(converted):
    base, out = converted
    for which in ("a", "parquet"):
        dest = base / which
        for bag, names in BAG_COLUMNS.items():
            assert (dest / "featureList" / bag).read_text() == "".join(f"{n},\n" for n in names)
            assert load_feature_list(dest / "featureList" / bag) == [(n, "") for n in names]
        raw = json.loads((dest / "metadata" / "tensor_metadata.json").read_text())
        assert raw["numberOfTrainingSamples"] == 79_959
        assert raw["features"] == [
            {"name": "global", "dtype": "float", "shape": [44], "isSparse": True},
            {"name": "per_user", "dtype": "float", "shape": [20], "isSparse": True},
            {"name": "per_movie", "dtype": "float", "shape": [24], "isSparse": True},
            {"name": "uid", "dtype": "long", "shape": [], "isSparse": False},
            {"name": "weight", "dtype": "float", "shape": [], "isSparse": False},
            {"name": "user_id", "dtype": "long", "shape": [], "isSparse": False},
            {"name": "movie_id", "dtype": "long", "shape": [], "isSparse": False},
        ]
        assert raw["labels"] == [
            {"name": "response", "dtype": "int", "shape": [], "isSparse": False}
        ]
    assert sorted(out["a"]["files"]) == sorted(
        [
            f"{b}/{s}/part-00000.tfrecord"
            for b in (*BAG_COLUMNS, "detext")
            for s in ("trainingData", "validationData")
        ]
        + [f"featureList/{b}" for b in BAG_COLUMNS]
        + [
            "metadata/tensor_metadata.json",
            "detext/metadata/tensor_metadata.json",
            "detext/vocab.txt",
        ]
    )


def test_detext(converted, raw):
    base, _ = converted
    ratings, _, items = raw
    dest = base / "a"
    meta = load_metadata(dest / "detext" / "metadata" / "tensor_metadata.json")
    assert meta.names == ("global", "title", "uid", "weight", "user_id", "movie_id", "response")
    (train_file,) = list_data_files(dest / "detext" / "trainingData")
    train = read_data_file(train_file, meta)
    global_train = read(dest, "global", "trainingData")
    for col in ("uid", "global_indices", "global_values", "response"):
        assert train.column(col).equals(global_train.column(col))
    assert train.column("title")[0].as_py() == "kolya"  # "Kolya (1996)"
    # Vocabulary: specials, then tokens by descending count over TRAINING rows, then A-Z.
    counts: dict[str, int] = {}
    for title in train.column("title").to_pylist():
        for token in title.split():
            counts[token] = counts.get(token, 0) + 1
    expected = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(counts, key=lambda t: (-counts[t], t))]
    assert (dest / "detext" / "vocab.txt").read_text(encoding="utf-8").splitlines() == expected


@pytest.mark.parametrize(
    "title, cleaned",
    [
        ("Toy Story (1995)", "toy story"),
        ("Mr. Holland's Opus (1995)", "mr holland s opus"),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", "city of lost children the cité des enfants perdus la"),
        ("Face/Off (1997)", "face off"),
        ("unknown", "unknown"),
        ("Romeo & Juliet", "romeo juliet"),
    ],
)  # fmt: skip
def test_clean_title(title, cleaned):
    assert clean_title(title) == cleaned


def test_same_seed_gives_identical_bytes(converted):
    base, _ = converted
    for left, right in (("a", "b"), ("parquet", "parquet2")):
        cmp = filecmp.dircmp(base / left, base / right)
        files = _all_files(base / left)
        assert files == _all_files(base / right)
        assert all(
            (base / left / f).read_bytes() == (base / right / f).read_bytes() for f in files
        ), cmp.report_full_closure()
        assert not [f for f in files if Path(f).name.startswith(".")]  # no temporary files left
    diff = [
        f
        for f in _all_files(base / "parquet")
        if (base / "parquet" / f).read_bytes() != (base / "seed1" / f).read_bytes()
    ]
    assert "global/trainingData/part-00000.parquet" in diff
    assert "featureList/global" not in diff


def test_parquet_and_tfrecord_hold_the_same_rows(converted):
    base, _ = converted
    for bag in BAG_COLUMNS:
        assert read(base / "a", bag, "validationData").equals(
            read(base / "parquet", bag, "validationData")
        )


def test_refuses_bad_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        convert_movielens(ML, tmp_path / "full", fmt="parquet")
    assert (tmp_path / "full" / "x").read_text() == "mine"
    with pytest.raises(ValueError, match=r"'fmt'.*\['tfrecord', 'parquet'\].*'avro'"):
        convert_movielens(ML, tmp_path / "o", fmt="avro")
    with pytest.raises(ValueError, match="'train_fraction'"):
        convert_movielens(ML, tmp_path / "o", train_fraction=1.5)
    with pytest.raises(DataError, match="not found"):
        convert_movielens(tmp_path / "nowhere", tmp_path / "o", fmt="parquet")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("u.user", "u.item"):
        (src / name).write_bytes((ML / name).read_bytes())
    (src / "u.data").write_text("1\t2\t3\t4\n5\t6\tx\t8\n")
    with pytest.raises(DataError, match="row 2"):
        convert_movielens(src, tmp_path / "o", fmt="parquet")
    (src / "u.data").write_text("1\t2\t3\t4\n5\t9999\t4\t8\n")
    with pytest.raises(DataError, match="movie_id 9999"):
        convert_movielens(src, tmp_path / "o", fmt="parquet")


def test_overwrite_replaces_the_other_format(tmp_path):
    convert_movielens(ML, tmp_path / "o", fmt="parquet")
    convert_movielens(ML, tmp_path / "o", fmt="parquet", seed=3, overwrite=True)
    assert list_data_files(tmp_path / "o" / "global" / "trainingData") == [
        str(tmp_path / "o" / "global" / "trainingData" / "part-00000.parquet")
    ]


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_conversion_is_described_in_words():
    summary = {
        "dest": "data/movielens", "format": "parquet", "files": ["a", "b"], "seconds": 3.25,
        "rows": 100_000, "users": 943, "movies": 1682, "positive_rate": 0.55375,
        "train_rows": 79_959, "train_positives": 44_260, "validation_rows": 20_041,
        "validation_positives": 11_115, "seed": 0, "vocab_size": 2011,
    }  # fmt: skip
    text = describe_conversion(summary)
    assert text.splitlines() == [
        "wrote data/movielens (parquet, 2 files) in 3.2 s",
        "  100,000 ratings of 943 users on 1,682 movies; positive (rating > 3): 55.4%",
        "  train 79,959 rows (44,260 positive), validation 20,041 rows (11,115 positive); "
        "split seed 0",
        "  title vocabulary: 2,011 tokens",
    ]
    assert "{" not in text
