"""Time-ordered synthetic days: the same planted users recur, new ones arrive (no Ray)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raymix.datasets.daily import generate_days, plan_days
from raymix.errors import DataError

PLAN = dict(days=3, rows=5000, update_rows=600, users=400, new_users=20, active_fraction=0.25,
            skew=1.0, seed=0)  # fmt: skip


def test_later_days_touch_a_fraction_of_the_known_users_plus_new_ones():
    plan = plan_days(**PLAN)
    assert [p.size for p in plan] == [5000, 600, 600]
    assert set(plan[0].tolist()) == set(range(400))  # every user at least once on day 1
    for day, ids in enumerate(plan[1:], start=1):
        known = 400 + 20 * (day - 1)
        fresh = set(range(known, known + 20))
        seen = set(ids.tolist())
        assert fresh <= seen  # the new users all have rows
        assert len(seen - fresh) == round(0.25 * known) and max(seen - fresh) < known
    again = plan_days(**PLAN)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again, strict=True))
    per_day = plan_days(**{**PLAN, "update_rows": (100, 700)})
    assert [p.size for p in per_day] == [5000, 100, 700]


@pytest.mark.parametrize("bad", [{"update_rows": (1,)}, {"active_fraction": 1.5}, {"days": 0}])
def test_bad_plans_are_refused(bad):
    with pytest.raises(DataError):
        plan_days(**{**PLAN, **bad})


def test_days_are_written_in_the_row_convention(tmp_path):
    summary = generate_days(tmp_path, days=2, rows=300, update_rows=50, users=30, new_users=5,
                            task="linear", global_features=3, entity_features=2)  # fmt: skip
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    d1 = pq.read_table(tmp_path / "day-1" / "train")
    d2 = pq.read_table(tmp_path / "day-2" / "train")
    v1 = pq.read_table(tmp_path / "day-1" / "validation")
    assert d1.num_rows + v1.num_rows == 300 and v1.num_rows == 30
    uids = np.concatenate([t.column("uid").to_numpy() for t in (d1, v1, d2)])
    assert np.unique(uids).size == uids.size  # unique over the days
    truth = np.load(tmp_path / "truth.npz")
    row = d2.slice(0, 1).to_pylist()[0]
    u = row["user_id"]
    z = (truth["intercept"] + np.dot(row["global"], truth["beta"])
         + np.dot(row["per_user_values"], truth["user_coef"][u]) + truth["user_intercept"][u])  # fmt: skip
    assert row["true_logit"] == pytest.approx(z)
    assert (tmp_path / "metadata" / "tensor_metadata.json").is_file()
    assert (tmp_path / "featureList" / "per_user").read_text().splitlines() == ["u0,", "u1,"]
