"""Tokenization: DeText's framing, and the numpy and TensorFlow tokenizers agree."""

import numpy as np
import pytest

from raymix.deep.text import Framing, Vocabulary, tf_tokenize, tokenize
from raymix.errors import DataError

TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "star", "wars", "the", "empire")


@pytest.fixture
def vocab():
    return Vocabulary(TOKENS)


def test_framing_adds_cls_and_sep_and_pads(vocab):
    framing = Framing(max_len=4, min_len=3, window_sizes=(3,))
    assert framing.cls_sep == 2 and framing.width == 8
    ids, lengths = tokenize(
        ["star wars", "the unknown empire strikes back again", ""], vocab, framing
    )
    assert ids.dtype == np.int32 and ids.shape == (3, 8)
    np.testing.assert_array_equal(ids[0], [2, 2, 4, 5, 3, 3, 0, 0])
    # truncated to max_len tokens before framing; unknown words map to [UNK]
    np.testing.assert_array_equal(ids[1], [2, 2, 6, 1, 7, 1, 3, 3])
    np.testing.assert_array_equal(ids[2], [2, 2, 3, 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(lengths, [6, 8, 4])


def test_min_len_and_window_sizes_set_width_and_length(vocab):
    framing = Framing(max_len=1, min_len=11, window_sizes=(2, 5))
    assert framing.cls_sep == 4 and framing.width == 11
    ids, lengths = tokenize(["star"], vocab, framing)
    assert lengths[0] == 11  # min_len counts padding as text
    np.testing.assert_array_equal(ids[0], [2] * 4 + [4] + [3] * 4 + [0, 0])
    assert Framing(max_len=2, min_len=0, window_sizes=(1,)).cls_sep == 1


def test_tensorflow_tokenizer_matches_numpy(vocab):
    import tensorflow as tf

    framing = Framing(max_len=3, min_len=3, window_sizes=(3, 4))
    texts = ["star wars", "", "the empire strikes back", "wars  wars\tthe", "x y z w v"]
    expected_ids, expected_len = tokenize(texts, vocab, framing)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(vocab.tokens)), tf.range(len(vocab), dtype=tf.int64)
        ),
        default_value=1,
    )
    ids, lengths = tf_tokenize(
        tf.constant(texts), table, {t: vocab.id_of(t) for t in TOKENS[:4]}, framing
    )
    np.testing.assert_array_equal(ids.numpy(), expected_ids)
    np.testing.assert_array_equal(lengths.numpy(), expected_len)


def test_vocabulary_file_errors_name_the_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nstar\n")
    with pytest.raises(
        DataError, match=r"vocab.txt: .*lacks the special tokens \['\[CLS\]', '\[SEP\]'\]"
    ):
        Vocabulary.load(path)
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nstar\nstar\n")
    with pytest.raises(DataError, match="token 'star' appears twice"):
        Vocabulary.load(path)
    with pytest.raises(DataError, match="cannot read the vocabulary"):
        Vocabulary.load(tmp_path / "missing.txt")


def test_movielens_vocabulary_loads(movielens):
    vocab = Vocabulary.load(movielens / "detext" / "vocab.txt")
    assert vocab.tokens[:4] == ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
    assert len(vocab) > 2000
