"""The numba kernel of :mod:`raymix.data.avro.photon_input`: one block of Photon ML GAME
input records decoded by walking a flattened schema program.

The program describes the top-level record field by field (``ftype``, union branches
``fbr[:fnb]``, what to keep: ``frole``/``fslot``) and, for every feature bag, the fields of its
``{name, term, value}`` item record the same way (``itype``/``inb``/``ibr``/``irole``). Fields
of any other primitive type are skipped; nested types the program cannot skip are refused
before the kernel runs. Every read is bounds-checked (the varint and string readers of
:mod:`raymix.data.avro.model_reader_kernels`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from raymix.data.avro.model_reader_kernels import (
    BAD_UNION,
    NEGATIVE,
    OK,
    TRAILING,
    TRUNCATED,
    long_at,
    string_at,
)

# Type codes of the program.
T_NULL, T_BOOL, T_LONG, T_FLOAT, T_DOUBLE, T_STRING, T_BAG, T_UNION = range(8)
# Roles of a top-level field: skipped, a number (response, weight, offset), an integer id, a
# string id (uid too), a feature bag.
R_SKIP, R_NUMBER, R_INT_ID, R_STR_ID, R_BAG = range(5)
# Roles of a bag item's field.
I_SKIP, I_NAME, I_TERM, I_VALUE = range(4)
SEPARATOR = 0xFF  # never in UTF-8: a key is ``name + 0xff + term``


@njit(cache=True)
def _scalar(data, pos, t):
    """(value as float64, start, end, next position) of a primitive; next < 0 on error (the
    status in ``start``). Strings give their (start, end); numbers their value."""
    if t == T_NULL:
        return np.nan, -1, -1, pos
    if t == T_BOOL:
        if pos >= data.size:
            return 0.0, TRUNCATED, 0, -1
        return float(data[pos]), 0, 0, pos + 1
    if t == T_LONG:
        v, nxt = long_at(data, pos)
        if nxt < 0:
            return 0.0, v, 0, -1
        return float(v), v, 0, nxt
    if t == T_FLOAT:
        if pos + 4 > data.size:
            return 0.0, TRUNCATED, 0, -1
        return float(data[pos : pos + 4].view(np.float32)[0]), 0, 0, pos + 4
    if t == T_DOUBLE:
        if pos + 8 > data.size:
            return 0.0, TRUNCATED, 0, -1
        return data[pos : pos + 8].view(np.float64)[0], 0, 0, pos + 8
    start, end = string_at(data, pos)
    if end < 0:
        return 0.0, start, 0, -1
    return np.nan, start, end, end


@njit(cache=True)
def _value(data, pos, t, nb, br):
    """A field's primitive or union-of-primitives value: (value, start, end, type, next)."""
    if t == T_UNION:
        b, pos = long_at(data, pos)
        if pos < 0:
            return 0.0, b, 0, t, -1
        if b < 0 or b >= nb:
            return 0.0, BAD_UNION, 0, t, -1
        t = br[b]
    v, s, e, nxt = _scalar(data, pos, t)
    return v, s, e, t, nxt


@njit(cache=True)
def decode_block(
    data, count, ftype, fnb, fbr, frole, fslot, itype, inb, ibr, irole,
    numbers, int_ids, str_start, str_end, bag_counts,
    item_bag, item_value, key_ptr, key_data,
):  # fmt: skip
    """Decode ``count`` records of ``data`` into the output arrays (row-major, one column per
    slot). Returns (status, records done, items, key bytes)."""
    pos = 0
    items = 0
    nkey = 0
    for r in range(count):
        for f in range(ftype.size):
            t = ftype[f]
            role = frole[f]
            slot = fslot[f]
            if t == T_BAG:
                bag = slot
                while True:
                    n, pos = long_at(data, pos)
                    if pos < 0:
                        return n, r, items, nkey
                    if n == 0:
                        break
                    if n < 0:
                        n = -n
                        _, pos = long_at(data, pos)
                        if pos < 0:
                            return TRUNCATED, r, items, nkey
                    if items + n > item_value.size:
                        return TRUNCATED, r, items, nkey
                    for _ in range(n):
                        ns = ne = ts = te = 0
                        val = 0.0
                        for k in range(itype.shape[1]):
                            it = itype[bag, k]
                            if it < 0:
                                break
                            v, s, e, got, pos = _value(data, pos, it, inb[bag, k], ibr[bag, k])
                            if pos < 0:
                                return s, r, items, nkey
                            ir = irole[bag, k]
                            if ir == I_NAME:
                                ns, ne = s, e
                            elif ir == I_TERM and got == T_STRING:
                                ts, te = s, e
                            elif ir == I_VALUE:
                                val = v
                        key_data[nkey : nkey + ne - ns] = data[ns:ne]
                        nkey += ne - ns
                        key_data[nkey] = SEPARATOR
                        nkey += 1
                        key_data[nkey : nkey + te - ts] = data[ts:te]
                        nkey += te - ts
                        item_bag[items] = bag
                        item_value[items] = val
                        items += 1
                        key_ptr[items] = nkey
                        bag_counts[bag, r] += 1
                continue
            v, s, e, got, pos = _value(data, pos, t, fnb[f], fbr[f])
            if pos < 0:
                return s, r, items, nkey
            if role == R_NUMBER:
                numbers[slot, r] = v
            elif role == R_INT_ID:
                if got != T_LONG:
                    return BAD_UNION, r, items, nkey
                int_ids[slot, r] = s
            elif role == R_STR_ID:
                if got == T_STRING:
                    str_start[slot, r] = s
                    str_end[slot, r] = e
                elif got == T_NULL:
                    str_start[slot, r] = -1
                else:
                    return BAD_UNION, r, items, nkey
    if pos != data.size:
        return TRAILING, count, items, nkey
    return OK, count, items, nkey


__all__ = ["NEGATIVE", "decode_block"]
