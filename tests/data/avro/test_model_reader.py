"""The compiled model reader gives, record by record, what fastavro and
``coefficients_by_index`` give."""

import fastavro
import numpy as np
import pytest

from raymix.data.avro import model_reader as avro_model_reader
from raymix.data.avro.model_reader import read_avro_model_table
from raymix.data.avro.model_writer import BLOCK_RECORDS, write_model_file
from raymix.data.avro.models import (
    INTERCEPT,
    MODEL_CLASS,
    MODEL_SCHEMA_JSON,
    coefficients_by_index,
    model_record,
    read_models,
    write_models,
)
from raymix.data.model_table import select_models
from raymix.errors import DataError

COLUMNS = ["entity", "intercept", "index", "value", "converged", "iterations"]


def ragged(rng, n, dim, most=6):
    counts = rng.integers(0, most + 1, n)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    index = np.concatenate(
        [np.sort(rng.choice(dim, k, replace=False)) for k in counts] + [np.zeros(0, np.int64)]
    ).astype(np.int64)
    return ptr, index, rng.normal(size=index.size)


def write(path, rng, n, dim, ids, *, names, intercept=True, variances=False, compress=True):
    ptr, index, value = ragged(rng, n, dim)
    return write_model_file(
        path,
        ids,
        intercepts=rng.normal(size=n) if intercept else None,
        coef_ptr=ptr,
        coef_index=index,
        coef_value=value,
        names=names,
        model_class=MODEL_CLASS["logistic"],
        variances=rng.random(ptr[-1] + n) if variances else None,
        compress=compress,
    )


def reference(path, names):
    out = []
    for record in read_models(path):
        intercept, index, value = coefficients_by_index(record, names)
        out.append((record["modelId"], intercept, index.tolist(), value.tolist()))
    return out


def assert_same(path, names):
    table = read_avro_model_table(path, names)
    assert table.column_names == COLUMNS
    assert str(table.schema.field("entity").type) == "string"
    assert str(table.schema.field("index").type) == "large_list<item: int64>"
    assert str(table.schema.field("value").type) == "large_list<item: double>"
    assert str(table.schema.field("iterations").type) == "int32"
    rows = table.to_pydict()
    got = list(zip(rows["entity"], rows["intercept"], rows["index"], rows["value"], strict=True))
    want = reference(path, names)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w
    assert all(rows["converged"]) and not any(rows["iterations"])
    return table


FILE_NAMES = [(f"f{j}é", "t" * (j % 3)) for j in range(40)]
# Another order, half of the file's features unknown, some it does not have.
READ_NAMES = FILE_NAMES[::-2] + [("g", ""), ("f1é", "x"), INTERCEPT]


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("variances", [True, False])
@pytest.mark.parametrize("written, read", [(FILE_NAMES, READ_NAMES), (None, None)])
def test_compiled_files_match_fastavro(tmp_path, compress, intercept, variances, written, read):
    rng = np.random.default_rng(5)
    n = 2 * BLOCK_RECORDS + 77  # three container blocks
    ids = np.arange(n, dtype=np.int64) * 1_000_003 - 5
    path = write(
        tmp_path / "m.avro", rng, n, 40, ids,
        names=written, intercept=intercept, variances=variances, compress=compress,
    )  # fmt: skip
    table = assert_same(path, read)
    assert table.num_rows == n
    assert table.column("entity")[0].as_py() == "-5"
    if written is not None:
        assert_same(path, None)  # names like "f3é" are not integers: all dropped
        assert len(read_avro_model_table(path, None).column("index").combine_chunks().values) == 0
        assert_same(path, written)  # every feature known


def test_string_ids_and_models_without_coefficients(tmp_path):
    n = 300
    ids = np.array(["user-" + "x" * k + "ü" for k in range(n)], dtype=object)
    path = write_model_file(
        tmp_path / "m.avro",
        ids,
        intercepts=None,
        coef_ptr=np.zeros(n + 1, np.int64),
        coef_index=np.zeros(0, np.int64),
        coef_value=np.zeros(0),
        names=None,
        model_class="c",
    )
    table = assert_same(path, None)
    assert table.column("entity").to_pylist() == list(ids)
    assert table.column("intercept").to_pylist() == [0.0] * n
    assert_same(path, FILE_NAMES)


def test_empty_files(tmp_path):
    path = write_model_file(
        tmp_path / "e.avro",
        np.zeros(0, np.int64),
        intercepts=np.zeros(0),
        coef_ptr=np.zeros(1, np.int64),
        coef_index=np.zeros(0, np.int64),
        coef_value=np.zeros(0),
        names=None,
        model_class="c",
    )
    assert assert_same(path, None).num_rows == 0
    write_models(tmp_path / "f.avro", [])
    assert assert_same(tmp_path / "f.avro", FILE_NAMES).num_rows == 0


def triple(name, term, value):
    return {"name": name, "term": term, "value": value}


def odd_records():
    """Records the compiled writer never makes: repeats, disorder, odd names."""
    odd_names = [
        "12", " 12", "12 ", "\t-3\n", "+4", "-0", "007", "1_000", "1__0", "_1", "1_", "+_1",
        "- 1", "+", "-", "", " ", "x1", "1x", "1.0", "1e3", "0x10", "٣", "١٢", "１２",
        "\xa05", "\x1c5", "\x0b7\x0c", "123456789012345678", "-123456789012345678",
        "1234567890123456789", "00000000000000000000042", "(INTERCEPT)", "f3é", "a\x00b",
    ]  # fmt: skip
    records = []
    for k, name in enumerate(odd_names):
        means = [triple(name, "", 0.5 + k), triple(name, "t", -1.5 - k)]
        records.append({"modelId": f"odd-{k}", "means": means})
    records += [
        {  # repeated and unordered features, two intercepts (the last counts)
            "modelId": "repeats",
            "means": [
                triple("7", "", 1.0),
                triple(*INTERCEPT, 2.0),
                triple("3", "", 3.0),
                triple("7", "", 4.0),
                triple("f1é", "t", 5.0),
                triple("f0é", "", 6.0),
                triple("f1é", "t", 7.0),
                triple(*INTERCEPT, 8.0),
                triple("(INTERCEPT)", "x", 9.0),
            ],
        },  # fmt: skip
        {"modelId": "", "means": []},
        {"modelId": "ünï\x00cödé", "means": [triple("a", "b\x00", 1.0), triple("a\x00b", "", 2.0)]},
    ]
    for r in records:
        r.update(modelClass=None, variances=None, lossFunction=None)
    records[0].update(modelClass="x", lossFunction="y", variances=records[0]["means"])
    return records


def test_records_written_by_fastavro(tmp_path):
    path = write_models(tmp_path / "odd.avro", odd_records())
    assert_same(path, None)
    names = FILE_NAMES + [("a", "b\x00"), ("a\x00b", ""), ("(INTERCEPT)", "x"), ("7", "")]
    names += [("12", "t"), FILE_NAMES[1], ("", "t")]  # a repeated pair: the last index counts
    assert_same(path, names)
    assert_same(path, [])
    rng = np.random.default_rng(2)
    records = [
        model_record(
            f"u{k}", rng.normal(), np.arange(k % 5), rng.normal(size=k % 5), None, "linear"
        )
        for k in range(BLOCK_RECORDS + 10)
    ]
    path = write_models(tmp_path / "m.avro", records)
    assert_same(path, None)


def test_feature_beyond_int64_is_a_data_error(tmp_path):
    record = {"modelId": "a", "modelClass": None, "variances": None, "lossFunction": None}
    record["means"] = [triple("99999999999999999999", "", 1.0)]
    path = write_models(tmp_path / "big.avro", [record])
    with pytest.raises(DataError, match="big.avro.*int64"):
        read_avro_model_table(path, None)
    assert read_avro_model_table(path, FILE_NAMES).num_rows == 1


def test_directory_of_files(tmp_path):
    rng = np.random.default_rng(3)
    write(tmp_path / "b.avro", rng, 500, 40, np.arange(500), names=FILE_NAMES)
    write(tmp_path / "a.avro", rng, 700, 40, np.arange(700) + 10**12, names=FILE_NAMES,
          compress=False, variances=True)  # fmt: skip
    (tmp_path / "sub").mkdir()
    write_models(tmp_path / "sub" / "c.avro", odd_records())
    write(tmp_path / "sub" / "d.avro", rng, 0, 40, np.arange(0), names=FILE_NAMES)
    (tmp_path / "notes.txt").write_text("not a model")
    table = assert_same(tmp_path, READ_NAMES)
    assert table.num_rows == 500 + 700 + len(odd_records())
    assert table.column("entity")[0].as_py() == str(10**12)  # a.avro first
    assert_same(tmp_path, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no \\*.avro files"):
        read_avro_model_table(tmp_path / "empty", None)


def fastavro_file(path, schema, records, codec="deflate"):
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records, codec=codec)
    return path


def test_other_schemas_read_through_fastavro(tmp_path, monkeypatch):
    records = odd_records()
    fields = MODEL_SCHEMA_JSON["fields"]
    reordered = dict(MODEL_SCHEMA_JSON, fields=[fields[2], fields[0], *fields[3:], fields[1]])
    extra = {"name": "extra", "type": "long", "default": 0}
    extended = dict(MODEL_SCHEMA_JSON, fields=[*fields, extra])
    fastavro_file(tmp_path / "reordered.avro", reordered, records)
    fastavro_file(tmp_path / "extended.avro", extended, [dict(r, extra=7) for r in records])
    calls = []
    fallback = avro_model_reader._read_with_fastavro
    monkeypatch.setattr(
        avro_model_reader,
        "_read_with_fastavro",
        lambda file, names: calls.append(file.name) or fallback(file, names),
    )
    for file in ("reordered.avro", "extended.avro"):
        assert_same(tmp_path / file, None)
        assert_same(tmp_path / file, FILE_NAMES + [("a", "b\x00")])
    assert calls == ["reordered.avro"] * 2 + ["extended.avro"] * 2


def test_same_layout_under_other_names_is_compiled(tmp_path, monkeypatch):
    """Record names, docs and properties (as Photon's Java writer adds) leave the layout."""
    schema = dict(MODEL_SCHEMA_JSON, name="OtherModelAvro", doc="models")
    schema["fields"] = [dict(f) for f in schema["fields"]]
    schema["fields"][0]["type"] = {"type": "string", "avro.java.string": "String"}
    fastavro_file(tmp_path / "m.avro", schema, odd_records(), codec="null")

    def refuse(file, names):
        raise AssertionError("read through fastavro")

    monkeypatch.setattr(avro_model_reader, "_read_with_fastavro", refuse)
    assert_same(tmp_path / "m.avro", None)


def test_truncated_or_corrupt_files_are_data_errors(tmp_path):
    rng = np.random.default_rng(4)
    for compress in (True, False):
        path = write(tmp_path / f"m{compress}.avro", rng, 300, 40, np.arange(300),
                     names=FILE_NAMES, variances=True, compress=compress)  # fmt: skip
        raw = path.read_bytes()
        cut = tmp_path / "cut.avro"
        for size in [0, 3, 10, 200, len(raw) // 2, len(raw) - 17, len(raw) - 1]:
            cut.write_bytes(raw[:size])
            with pytest.raises(DataError, match="cut.avro"):
                read_avro_model_table(cut, FILE_NAMES)
    # Random damage to the records of a null-codec file: a table or a DataError, nothing else.
    raw = bytearray(path.read_bytes())
    damaged = tmp_path / "damaged.avro"
    for _ in range(300):
        copy = bytearray(raw)
        for at in rng.integers(len(raw) // 4, len(raw) - 16, rng.integers(1, 4)):
            copy[at] = rng.integers(256)
        damaged.write_bytes(bytes(copy))
        try:
            table = read_avro_model_table(damaged, None if rng.random() < 0.5 else FILE_NAMES)
        except DataError as exc:
            assert "damaged.avro" in str(exc)
        else:
            assert table.num_rows <= 300
    bad_sync = bytearray(raw)
    bad_sync[-1] ^= 1
    damaged.write_bytes(bytes(bad_sync))
    with pytest.raises(DataError, match="damaged.avro.*sync"):
        read_avro_model_table(damaged, None)


def test_integer_names_as_python_reads_them(tmp_path):
    rng = np.random.default_rng(8)
    alphabet = list(" \t\n\x0b\x1c+-_0123456789x٣１")
    names = ["".join(rng.choice(alphabet, rng.integers(0, 7))) for _ in range(3000)]
    records = [
        {"modelId": str(k), "means": [triple(n, "", float(k)) for n in names[k::100]]}
        for k in range(100)
    ]
    for r in records:
        r.update(modelClass=None, variances=None, lossFunction=None)
    path = write_models(tmp_path / "ints.avro", records)
    table = assert_same(path, None)
    assert len(table.column("index").combine_chunks().values) > 100


SEQUENCES = [
    b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xf4\x8f\xbf\xbf",  # valid
    b"\xed\xa0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\x80", b"\xbf", b"\xc3", b"\xe2\x82",
    b"\xf0\x9f\x98", b"\xc3\xc3", b"\xff", b"\xfe",
]  # fmt: skip


@pytest.mark.parametrize("field", ["IDzz", "MCzz", "LFzz", "NMzz", "TMzz", "VNzz", "VTzz"])
def test_utf8_is_checked_as_fastavro_does(tmp_path, field):
    record = {
        "modelId": "IDzz",
        "modelClass": "MCzz",
        "means": [triple("NMzz", "TMzz", 1.0), triple("3", "", 2.0)],
        "variances": [triple("VNzz", "VTzz", 1.0)],
        "lossFunction": "LFzz",
    }
    clean = fastavro_file(tmp_path / "clean.avro", MODEL_SCHEMA_JSON, [record], codec="null")
    raw = clean.read_bytes()
    for sequence in SEQUENCES:
        path = tmp_path / "u.avro"
        path.write_bytes(raw.replace(field.encode(), (sequence + b"zzzz")[:4]))
        try:
            list(read_models(path))
        except DataError:
            with pytest.raises(DataError, match="u.avro.*UTF-8"):
                read_avro_model_table(path, None)
            with pytest.raises(DataError, match="u.avro.*UTF-8"):
                read_avro_model_table(path, [("NMzz", "TMzz")])
        else:
            assert_same(path, None)
            assert_same(path, [("NMzz", "TMzz"), ((sequence + b"zzzz")[:4].decode(), "TMzz")])


def test_select_models_reads_the_table(tmp_path):
    rng = np.random.default_rng(6)
    path = write(tmp_path / "m.avro", rng, 50, 40, np.arange(50) * 3, names=None)
    table = read_avro_model_table(path, None)
    models, found = select_models(table, np.array([3, 4, 0, 147]), dim=20)
    assert found == 3
    want = reference(path, None)
    for row, k in zip(range(4), [1, None, 0, 49], strict=True):
        index = models.coef_index[models.coef_ptr[row] : models.coef_ptr[row + 1]]
        value = models.coef_value[models.coef_ptr[row] : models.coef_ptr[row + 1]]
        if k is None:
            assert models.intercepts[row] == 0 and index.size == 0
            continue
        _, intercept, w_index, w_value = want[k]
        keep = np.asarray(w_index, np.int64) < 20
        assert models.intercepts[row] == intercept
        assert index.tolist() == np.asarray(w_index)[keep].tolist()
        assert value.tolist() == np.asarray(w_value)[keep].tolist()


def test_model_features_are_the_distinct_pairs_of_the_means(tmp_path):
    """What a warm start knows, compiled or through fastavro: every (name, term) but the
    intercept, variances left out."""
    from raymix.data.avro.model_reader import model_features

    rng = np.random.default_rng(3)
    n = BLOCK_RECORDS + 9  # two container blocks
    write(tmp_path / "d" / "a.avro", rng, n, 40, np.arange(n), names=FILE_NAMES, variances=True)
    records = odd_records()
    fields = MODEL_SCHEMA_JSON["fields"]
    reordered = dict(MODEL_SCHEMA_JSON, fields=[fields[2], fields[0], *fields[3:], fields[1]])
    fastavro_file(tmp_path / "d" / "b.avro", reordered, records)  # read through fastavro
    want = {
        (m["name"], m["term"])
        for record in read_models(tmp_path / "d")
        for m in record["means"]
        if (m["name"], m["term"]) != INTERCEPT
    }
    assert ("f3é", "") in want and ("a\x00b", "t") in want
    assert model_features(tmp_path / "d") == want
    assert model_features(tmp_path / "d" / "a.avro") <= set(FILE_NAMES)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_coefficient_fails_naming_the_file_and_model(tmp_path, bad):
    good = model_record("u1", 0.5, np.arange(2), np.ones(2), None, "logistic")
    spoilt = model_record("u2", 0.5, np.arange(2), np.array([1.0, bad]), None, "logistic")
    path = write_models(tmp_path / "part-00000.avro", [good, spoilt])
    with pytest.raises(DataError) as info:
        read_avro_model_table(tmp_path, None)
    assert str(info.value) == (
        f"{path}: model 'u2' has a NaN or infinite coefficient ({bad}): "
        "a model's coefficients must be finite"
    )
