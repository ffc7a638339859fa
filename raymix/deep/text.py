"""Text to token ids, as DeText feeds a CNN: vocabulary lookup, [CLS]/[SEP] framing, padding.

A text is split on whitespace (it is already cleaned: the movieLens converter lowercases
and removes punctuation), each token is looked up in the vocabulary ([UNK] when absent),
at most ``max_len`` tokens are kept, and ``c = max(1, max(window_sizes) - 1)`` [CLS] tokens
are put before and ``c`` [SEP] tokens after (DeText's framing, so every real token is the
centre of some window). The ids are padded with [PAD] to a fixed width
``width = max(max_len + 2c, min_len, max(window_sizes))``; the length (what the CNN's mask
keeps) is ``max(n + 2c, min_len)``.

The same steps exist twice: in numpy (:func:`tokenize`, used by the read tasks) and in
TensorFlow (:func:`tf_tokenize`, inside the exported SavedModel so that it scores raw text).
A test holds them equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raymix import storage
from raymix.errors import DataError

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"


@dataclass(frozen=True)
class Framing:
    """How texts become fixed-width id rows (see the module docstring)."""

    max_len: int
    min_len: int
    window_sizes: tuple[int, ...]

    @property
    def cls_sep(self) -> int:
        return max(1, max(self.window_sizes) - 1)

    @property
    def width(self) -> int:
        return max(self.max_len + 2 * self.cls_sep, self.min_len, max(self.window_sizes))


@dataclass(frozen=True)
class Vocabulary:
    """Tokens in id order (line k of vocab.txt has id k); the four special tokens are required."""

    tokens: tuple[str, ...]

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            lines = storage.read_text(path).splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the vocabulary: {exc}", path=str(path)) from None
        tokens = tuple(line.strip() for line in lines if line.strip())
        missing = [t for t in (PAD, UNK, CLS, SEP) if t not in tokens]
        if missing:
            raise DataError(f"the vocabulary lacks the special tokens {missing}", path=str(path))
        seen: set[str] = set()
        for token in tokens:
            if token in seen:
                raise DataError(f"token {token!r} appears twice in the vocabulary", path=str(path))
            seen.add(token)
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def id_of(self, token: str) -> int:
        return self.tokens.index(token)


def tokenize(
    texts: Sequence[str | None], vocab: Vocabulary, framing: Framing
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``int32 [n, framing.width]`` and lengths ``int32 [n]`` of ``texts``."""
    index = {token: k for k, token in enumerate(vocab.tokens)}
    pad, unk = index[PAD], index[UNK]
    c = framing.cls_sep
    head, tail = [index[CLS]] * c, [index[SEP]] * c
    ids = np.full((len(texts), framing.width), pad, dtype=np.int32)
    lengths = np.empty(len(texts), dtype=np.int32)
    for row, text in enumerate(texts):
        words = (text or "").split()[: framing.max_len]
        framed = head + [index.get(w, unk) for w in words] + tail
        ids[row, : len(framed)] = framed
        lengths[row] = max(len(framed), framing.min_len)
    return ids, lengths


def tf_tokenize(texts, table, ids: dict[str, int], framing: Framing):
    """TensorFlow twin of :func:`tokenize`; ``table`` maps token -> id (default [UNK])."""
    import tensorflow as tf

    c = framing.cls_sep
    words = tf.strings.split(texts)[:, : framing.max_len]
    looked_up = tf.ragged.map_flat_values(table.lookup, words)
    looked_up = tf.cast(looked_up, tf.int32)
    n = tf.shape(texts)[0]
    head = tf.fill([n, c], tf.constant(ids[CLS], tf.int32))
    tail = tf.fill([n, c], tf.constant(ids[SEP], tf.int32))
    framed = tf.concat([head, looked_up, tail], axis=1)
    lengths = tf.maximum(tf.cast(framed.row_lengths(), tf.int32), framing.min_len)
    dense = framed.to_tensor(default_value=ids[PAD], shape=[None, framing.width])
    return dense, lengths
