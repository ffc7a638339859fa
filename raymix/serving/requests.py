"""``POST /predict`` bodies: parsed and checked against a served run's :class:`Layout`, no Ray.

A body is a JSON object ``{"rows": [row, ...]}`` (1 to :data:`MAX_ROWS` rows); a row is a
flat object in raymix's row convention::

    {"uid": 17,                                   optional, echoed back
     "offset": 0.25,                              optional, default 0
     "user_id": 42, "movie_id": "7",              every entity column of the run
     "global": {"age": 0.3, "Drama": 1, "12": 1}, every bag: {name|index: value} ...
     "per_user": [0.1, 0.0, 2.0],                 ... or a dense list of dim values
     "title": "toy story"}                        every text column (deep coordinates)

A sparse key is a feature's name from the feature list (``name``, or ``name,term`` when the
term is not empty), else a feature index in decimal. Anything else is refused with a
:class:`RequestError` whose one-line message names the field, e.g.
``rows[2].global.age: expected a finite number, got "x"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import orjson
import scipy.sparse as sp

from raymix.errors import RaymixError
from raymix.serving.model import Bag, Layout
from raymix.serving.vectorised import batch_fields

MAX_ROWS = 10_000
RESERVED = ("uid", "offset")


class RequestError(RaymixError):
    """A request the run cannot score; ``field`` is the path of the culprit (``rows[2].age``)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self._raw = message

    def __reduce__(self):
        return (type(self), (self._raw, self.field))


@dataclass
class Batch:
    """Rows ready to score: ``bags[name]`` is CSR (sparse bags) or float64 (n, dim) (dense
    bags); ``entities[column]`` object arrays of ids; ``texts[column]`` strings."""

    n: int
    uid: list
    offset: np.ndarray
    bags: dict
    entities: dict[str, np.ndarray]
    texts: dict[str, list[str]]


def parse_body(body: bytes | str) -> list:
    """The ``rows`` of a JSON body."""
    return body_rows(json_body(body))


def json_body(body: bytes | str):
    """A JSON body, decoded."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # json.loads says why, or reads what orjson does not
        return _json_loads(body)


def body_rows(data) -> list:
    """The ``rows`` of a decoded JSON body."""
    if not isinstance(data, dict) or "rows" not in data:
        raise RequestError('expected a JSON object {"rows": [...]} or {"columns": {...}}', "body")
    unknown = sorted(set(data) - {"rows"})
    if unknown:
        raise RequestError("unknown field", unknown[0])
    rows = data["rows"]
    if not isinstance(rows, list) or not rows:
        raise RequestError("expected a non-empty list of row objects", "rows")
    if len(rows) > MAX_ROWS:
        raise RequestError(f"at most {MAX_ROWS} rows per request, got {len(rows)}", "rows")
    return rows


def parse_rows(rows: list, layout: Layout) -> Batch:
    """Check ``rows`` (JSON values) against ``layout`` and build a :class:`Batch`: column by
    column when the request is regular (:mod:`raymix.serving.vectorised`), else row by row."""
    fields = batch_fields(rows, layout, RESERVED)
    if fields is not None:
        return Batch(**fields)
    return checked_rows(rows, layout)


def checked_rows(rows: list, layout: Layout) -> Batch:
    """:func:`parse_rows` value by value: the first bad value raises, naming its field."""
    columns = {c for bag in layout.bags.values() for c in bag.columns or ()}
    known = set(layout.bags) | columns | set(layout.entities) | set(layout.texts) | set(RESERVED)
    n = len(rows)
    uid: list = [None] * n
    offset = np.zeros(n)
    entities: dict[str, list] = {c: [None] * n for c in layout.entities}
    texts: dict[str, list] = {c: [""] * n for c in layout.texts}
    builders = {name: _BagBuilder(bag, n) for name, bag in layout.bags.items()}
    for r, row in enumerate(rows):
        where = f"rows[{r}]"
        if not isinstance(row, dict):
            raise RequestError("expected an object", where)
        for key in row:
            if key not in known:
                raise RequestError(
                    f"unknown field (expected {_expected(layout)})", f"{where}.{key}"
                )
        if "uid" in row:
            value = row["uid"]
            if not (isinstance(value, int | str) and not isinstance(value, bool)):
                raise RequestError("expected an integer or a string", f"{where}.uid")
            uid[r] = value
        if "offset" in row:
            offset[r] = _number(row["offset"], f"{where}.offset")
        for column, ids in entities.items():
            ids[r] = _entity(row, column, where)
        for column, values in texts.items():
            if column not in row:
                raise RequestError("missing text", f"{where}.{column}")
            value = row[column]
            if not isinstance(value, str):
                raise RequestError(f"expected a string, got {show(value)}", f"{where}.{column}")
            values[r] = value
        for name, builder in builders.items():
            if builder.bag.columns:  # scalar columns, one feature each
                builder.add(r, [_column(row, c, where) for c in builder.bag.columns], where)
                continue
            if name not in row:
                raise RequestError("missing bag (give {} for no features)", f"{where}.{name}")
            builder.add(r, row[name], f"{where}.{name}")
    return Batch(
        n=n,
        uid=uid,
        offset=offset,
        bags={name: b.build() for name, b in builders.items()},
        entities={c: np.asarray(ids, dtype=object) for c, ids in entities.items()},
        texts=texts,
    )


def _column(row: dict, column: str, where: str):
    """A scalar feature column's value in ``row``."""
    if column not in row:
        raise RequestError("missing feature column", f"{where}.{column}")
    return _number(row[column], f"{where}.{column}")


def _json_loads(body: bytes | str):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"not valid JSON ({_line(str(exc))})", "body") from None
    except RecursionError:
        raise RequestError("not valid JSON (nested too deeply)", "body") from None


def concat_batches(batches: list[Batch]) -> Batch:
    """One batch of the rows of several, in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    bags = {}
    for name, X in first.bags.items():
        parts = [b.bags[name] for b in batches]
        bags[name] = sp.vstack(parts, format="csr") if sp.issparse(X) else np.vstack(parts)
    return Batch(
        n=sum(b.n for b in batches),
        uid=[u for b in batches for u in b.uid],
        offset=np.concatenate([b.offset for b in batches]),
        bags=bags,
        entities={c: np.concatenate([b.entities[c] for b in batches]) for c in first.entities},
        texts={c: [t for b in batches for t in b.texts[c]] for c in first.texts},
    )


def predictions(run_name: str, batch: Batch, scored, start: int = 0, stop: int | None = None):
    """The response body of rows ``start:stop`` of a scored batch, as a JSON-ready dict."""
    stop = batch.n if stop is None else stop
    total = scored.total[start:stop].tolist()
    own = {name: s[start:stop].tolist() for name, s in scored.coordinates.items()}
    probability = None if scored.probability is None else scored.probability[start:stop].tolist()
    out = []
    for k in range(stop - start):
        item: dict = {"score": total[k], "coordinates": {name: s[k] for name, s in own.items()}}
        if probability is not None:
            item["probability"] = probability[k]
        u = batch.uid[start + k]
        if u is not None:
            item["uid"] = u
        out.append(item)
    return {"run": run_name, "predictions": out}


class _BagBuilder:
    """One bag's values, row by row, into CSR (sparse bags) or a dense array."""

    def __init__(self, bag: Bag, n: int):
        self.bag = bag
        self.n = n
        self.counts = np.zeros(n, np.int64)
        self.index: list[int] = []
        self.value: list[float] = []
        self.dense = np.zeros((n, bag.dim)) if bag.dense else None

    def add(self, r: int, given, where: str) -> None:
        bag = self.bag
        if isinstance(given, list):
            if len(given) != bag.dim:
                raise RequestError(f"expected {bag.dim} values, got {len(given)}", where)
            values = [_number(v, f"{where}[{j}]") for j, v in enumerate(given)]
            if self.dense is not None:
                self.dense[r] = values
                return
            pairs = [(j, v) for j, v in enumerate(values) if v != 0.0]
        elif isinstance(given, dict):
            pairs = [
                (self._feature(key, where), _number(v, f"{where}.{key}"))
                for key, v in given.items()
            ]
            pairs.sort()
            for (a, _), (b, _) in zip(pairs, pairs[1:], strict=False):
                if a == b:
                    raise RequestError(f"feature {a} given twice (by name and index)", where)
            if self.dense is not None:
                for j, v in pairs:
                    self.dense[r, j] = v
                return
        else:
            kind = "a dense list" if bag.dense else "an object {name|index: value}"
            raise RequestError(
                f"expected {kind} or a list of {bag.dim} values, got {show(given)}", where
            )
        self.counts[r] = len(pairs)
        for j, v in pairs:
            self.index.append(j)
            self.value.append(v)

    def _feature(self, key: str, where: str) -> int:
        bag = self.bag
        if bag.features is not None:
            j = bag.features.get(key)
            if j is not None:
                return j
        if key.isdigit() and key.isascii():
            j = int(key)
            if j < bag.dim:
                return j
            raise RequestError(f"feature index {j} outside [0, {bag.dim})", f"{where}.{key}")
        known = "no such feature" if bag.features is not None else "expected a feature index"
        raise RequestError(known, f"{where}.{key}")

    def build(self):
        if self.dense is not None:
            return self.dense
        ptr = np.zeros(self.n + 1, np.int64)
        np.cumsum(self.counts, out=ptr[1:])
        index = np.asarray(self.index, np.int32 if self.bag.dim < 2**31 - 1 else np.int64)
        value = np.asarray(self.value, np.float64)
        return sp.csr_matrix((value, index, ptr), shape=(self.n, self.bag.dim))


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"expected a finite number, got {show(value)}", where)
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise RequestError(f"expected a finite number, got {show(value)}", where)
    return x


def _entity(row: dict, column: str, where: str):
    if column not in row:
        raise RequestError("missing entity id", f"{where}.{column}")
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RequestError(
            f"expected an integer or a string entity id, got {show(value)}", f"{where}.{column}"
        )
    return value


def _expected(layout: Layout) -> str:
    bags = [c for name, bag in layout.bags.items() for c in bag.columns or (name,)]
    names = [*layout.entities, *bags, *layout.texts, *RESERVED]
    return ", ".join(names)


def show(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return _line(text if len(text) <= 40 else text[:37] + "...")


def _line(text: str) -> str:
    return " ".join(text.split())
