"""Export the trained network as a TensorFlow SavedModel; load it back; score with it.

``<output>/<coordinate>/models/`` is a SavedModel directory (``saved_model.pb``,
``variables/``) plus ``raymix_deep.json`` (architecture, text framing, columns). Its
``serving_default`` signature scores raw rows, tokenizer included::

    text         string  [batch]          the cleaned text (e.g. the movie title)
    wide_ids     int64   [batch, k]       wide-bag feature indices, -1 = padding
    wide_values  float32 [batch, k]       their values
    -> logit     float32 [batch]          the coordinate's own score (no offset)

``score_ids`` takes already tokenized rows (``tokens``, ``lengths``, ``wide_ids``,
``wide_values``), as training does. A checkpoint's copy also holds ``trainer_state.npz``
(the optimizer's slots and counters, the number of fits done), which a resumed run restores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from raymix import storage
from raymix.deep.model import Architecture, build_model
from raymix.deep.text import CLS, PAD, SEP, UNK, Framing, Vocabulary, tf_tokenize
from raymix.deep.train import TrainerState
from raymix.errors import DataError
from raymix.files import atomic_path

META = "raymix_deep.json"
FORMAT = 1
TRAINER_STATE = "trainer_state.npz"


def export_saved_model(
    directory: str | Path,
    arch: Architecture,
    weights: dict[str, np.ndarray],
    vocab: Vocabulary,
    framing: Framing,
    *,
    text_column: str,
    feature_bag: str | None,
) -> Path:
    """Write the SavedModel to ``directory`` (created; if it exists it must be empty)."""
    import tensorflow as tf

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise DataError(
            "cannot export a SavedModel into a non-empty directory", path=str(directory)
        )
    serving = _serving_module(build_model(arch, weights), vocab, framing)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.saved_model.save(
            serving,
            str(staging),
            signatures={"serving_default": serving.serve, "score_ids": serving.score_ids},
        )
        meta = {
            "format": FORMAT,
            "architecture": asdict(arch),
            "framing": asdict(framing),
            "text_column": text_column,
            "feature_bag": feature_bag,
            "variables": list(arch.shapes()),
        }
        (staging / META).write_text(json.dumps(meta, indent=2) + "\n")
        if directory.exists():
            directory.rmdir()
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_meta(directory: str | Path) -> dict:
    path = Path(storage.local_tree(directory)) / META
    if not path.is_file():
        raise DataError(f"not a raymix deep model (no {META})", path=str(directory))
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"unsupported deep model format {meta.get('format')!r}", path=str(path))
    return meta


def architecture_of(meta: dict) -> tuple[Architecture, Framing]:
    a, f = meta["architecture"], meta["framing"]
    arch = Architecture(
        **{**a, "window_sizes": tuple(a["window_sizes"]), "hidden": tuple(a["hidden"])}
    )
    return arch, Framing(f["max_len"], f["min_len"], tuple(f["window_sizes"]))


def load_weights(directory: str | Path) -> tuple[Architecture, dict[str, np.ndarray]]:
    """The architecture and weights of an exported model (for warm starts and resumes)."""
    meta = read_meta(directory)
    arch, _ = architecture_of(meta)
    loaded = load_saved_model(directory)
    values = [v.numpy() for v in loaded.model.vars]
    return arch, dict(zip(meta["variables"], values, strict=True))


def save_trainer_state(directory: str | Path, state: TrainerState) -> Path:
    """Write what a trainer carries besides its weights (optimizer slots and counters, the
    fit number) beside an exported model."""
    arrays: dict[str, Any] = {f"optimizer/{k}": v for k, v in (state.optimizer or {}).items()}
    arrays["fits"] = np.int64(state.fits)
    path = Path(directory) / TRAINER_STATE
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_trainer_state(directory: str | Path, weights: dict[str, np.ndarray]) -> TrainerState:
    """``weights`` with the optimizer state and fit number saved beside the model, if any
    (a checkpoint's copy; otherwise a fresh optimizer and no fit done)."""
    path = Path(storage.local_tree(directory)) / TRAINER_STATE
    if not path.is_file():
        return TrainerState(weights)
    with np.load(path) as saved:
        prefix = "optimizer/"
        optimizer = {k[len(prefix) :]: saved[k] for k in saved.files if k.startswith(prefix)}
        return TrainerState(weights, optimizer, int(saved["fits"]))


_LOADED: dict[str, object] = {}


def load_saved_model(directory: str | Path):
    """``tf.saved_model.load`` once per process and directory."""
    import tensorflow as tf

    key = os.path.abspath(storage.local_tree(directory))
    if key not in _LOADED:
        if not (Path(key) / "saved_model.pb").is_file():
            raise DataError("no SavedModel here (saved_model.pb is missing)", path=key)
        _LOADED[key] = tf.saved_model.load(key)
    return _LOADED[key]


def _serving_module(model, vocab: Vocabulary, framing: Framing):
    import tensorflow as tf

    ids = {t: vocab.id_of(t) for t in (PAD, UNK, CLS, SEP)}

    class Serving(tf.Module):
        def __init__(self):
            super().__init__(name="raymix_deep")
            self.model = model
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(vocab.tokens)), tf.range(len(vocab), dtype=tf.int64)
                ),
                default_value=ids[UNK],
            )

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="text"),
                tf.TensorSpec([None, None], tf.int64, name="wide_ids"),
                tf.TensorSpec([None, None], tf.float32, name="wide_values"),
            ]
        )
        def serve(self, text, wide_ids, wide_values):
            tokens, lengths = tf_tokenize(text, self.table, ids, framing)
            return {"logit": self.model(tokens, lengths, wide_ids, wide_values)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, framing.width], tf.int32, name="tokens"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
                tf.TensorSpec([None, None], tf.int64, name="wide_ids"),
                tf.TensorSpec([None, None], tf.float32, name="wide_values"),
            ]
        )
        def score_ids(self, tokens, lengths, wide_ids, wide_values):
            return {"logit": self.model(tokens, lengths, wide_ids, wide_values)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def tokenize(self, text):
            tokens, lengths = tf_tokenize(text, self.table, ids, framing)
            return {"tokens": tokens, "lengths": lengths}

    return Serving()


def check_deep_model(directory: str | Path, source) -> str:
    """Check an exported model against the data it will score; return its directory."""
    meta = read_meta(directory)
    if not (Path(storage.local_tree(directory)) / "saved_model.pb").is_file():
        raise DataError("no SavedModel here (saved_model.pb is missing)", path=str(directory))
    arch, _ = architecture_of(meta)
    dim = source.schema.dim if source.schema.bag else 0
    if arch.wide_dim != dim:
        raise DataError(
            f"the model's wide bag has dimension {arch.wide_dim} but the data's has {dim}",
            path=str(directory),
        )
    from raymix.deep.inputs import check_text_column

    check_text_column(source, meta["text_column"])
    return (
        storage.normal(directory) if storage.is_uri(directory) else str(Path(directory).resolve())
    )


def score_rows(
    directory: str | Path,
    texts: list[str],
    wide_ids: np.ndarray,
    wide_values: np.ndarray,
    batch: int = 8192,
) -> np.ndarray:
    """Logits (float64) of raw rows through the SavedModel's ``serving_default`` signature."""
    import tensorflow as tf

    serve = load_saved_model(directory).signatures["serving_default"]
    out = [np.zeros(0)]
    for start in range(0, len(texts), batch):
        s = slice(start, start + batch)
        logits = serve(
            text=tf.constant(texts[s], tf.string),
            wide_ids=tf.constant(wide_ids[s], tf.int64),
            wide_values=tf.constant(wide_values[s], tf.float32),
        )["logit"]
        out.append(logits.numpy().astype(np.float64))
    return np.concatenate(out)
