import pickle

from raymix.errors import DataError


def test_data_error_keeps_its_reason_and_moves_to_another_place():
    found = DataError("negative weight", path="block", row=7, column="weight")
    assert str(found) == "block, row 7, column 'weight': negative weight"
    assert found.reason == "negative weight"
    moved = found.with_location(path="part-3.parquet", row=41)
    assert str(moved) == "part-3.parquet, row 41, column 'weight': negative weight"
    assert (moved.path, moved.row, moved.column, moved.reason) == (
        "part-3.parquet",
        41,
        "weight",
        "negative weight",
    )
    nowhere = DataError("no rows").with_location(path="f", row=None)
    assert str(nowhere) == "f: no rows"
    again = pickle.loads(pickle.dumps(moved))
    assert str(again) == str(moved) and again.reason == moved.reason and again.row == 41
