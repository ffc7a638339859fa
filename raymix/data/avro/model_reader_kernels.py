"""The numba kernel of :mod:`raymix.data.avro.model_reader`: one block of
``BayesianLinearModelAvro`` records decoded from Avro's binary encoding.

Every read is bounds-checked; a helper returns a negative position on error, with the status
code in place of its value. Loops sit in the kernel's body or in functions that are not
inlined: a loop inside an inlined helper (a long's bytes, a string's) makes numba's code for
the whole kernel 3-4x slower.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Kernel status codes.
OK, TRUNCATED, BAD_LONG, NEGATIVE, BAD_UNION, BAD_UTF8, TRAILING = range(7)
#: what each status but OK says of a corrupt block
REASONS = {
    TRUNCATED: "a record runs past the end of its block",
    BAD_LONG: "a long is more than 10 bytes",
    NEGATIVE: "a negative string length",
    BAD_UNION: "a union branch out of range",
    BAD_UTF8: "a string is not valid UTF-8",
    TRAILING: "bytes after the block's last record",
}
# Results of parsing a name as an integer (``names=None``).
_INT, _NOT_INT, _ASK_PYTHON = 0, 1, 2


@njit(cache=True, inline="always")
def _long(data, pos):
    """(value, next position), or (status, -1)."""
    if pos < data.size and data[pos] < 0x80:  # one byte: most lengths, counts and branches
        z = np.int64(data[pos])
        return (z >> 1) ^ -(z & 1), pos + 1
    return _long_bytes(data, pos)


@njit(cache=True)
def _long_bytes(data, pos):
    z = 0
    shift = 0
    done = False
    while pos < data.size and shift < 64:
        byte = np.int64(data[pos])
        pos += 1
        z |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            done = True
            break
    if not done:
        return (TRUNCATED if pos >= data.size else BAD_LONG), -1
    return ((z >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(z & 1), pos


@njit(cache=True, inline="always")
def _string(data, pos):
    """(start, end) of the string at ``pos`` (its UTF-8 is the caller's to check), or
    (status, -1)."""
    length, pos = _long(data, pos)
    if pos < 0:
        return length, -1
    if length < 0:
        return NEGATIVE, -1
    if length > data.size - pos:
        return TRUNCATED, -1
    return pos, pos + length


@njit(cache=True, inline="always")
def _optional_string(data, pos):
    """(start, end) of a ``union {null, string}`` (empty for null), or (status, -1)."""
    branch, pos = _long(data, pos)
    if pos < 0:
        return branch, -1
    if branch == 0:
        return pos, pos
    if branch != 1:
        return BAD_UNION, -1
    return _string(data, pos)


@njit(cache=True)
def _is_utf8(data, pos, end):
    """Whether ``data[pos:end]`` is what Python's strict UTF-8 decoder accepts."""
    while pos < end:
        b = data[pos]
        if b < 0x80:
            pos += 1
            continue
        if 0xC2 <= b <= 0xDF:
            size, lo, hi = 2, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            size = 3
            lo = 0xA0 if b == 0xE0 else 0x80  # no overlong forms
            hi = 0x9F if b == 0xED else 0xBF  # no surrogates
        elif 0xF0 <= b <= 0xF4:
            size = 4
            lo = 0x90 if b == 0xF0 else 0x80
            hi = 0x8F if b == 0xF4 else 0xBF  # nothing above U+10FFFF
        else:
            return False
        if pos + size > end or not lo <= data[pos + 1] <= hi:
            return False
        for i in range(pos + 2, pos + size):
            if not 0x80 <= data[i] <= 0xBF:
                return False
        pos += size
    return True


@njit(cache=True, inline="always")
def _space(b):
    return b == 32 or 9 <= b <= 13  # what Python's int() strips, among ASCII bytes


@njit(cache=True)
def _parse_int(data, lo, hi):
    """Python's ``int(name)`` of the name ``data[lo:hi]``: (value, _INT), (0, _NOT_INT), or
    (0, _ASK_PYTHON) when the name is not ASCII or has more than 18 digits."""
    for i in range(lo, hi):
        if data[i] >= 0x80:
            return 0, _ASK_PYTHON
    while lo < hi and _space(data[lo]):
        lo += 1
    while hi > lo and _space(data[hi - 1]):
        hi -= 1
    negative = False
    if lo < hi and (data[lo] == 43 or data[lo] == 45):  # + -
        negative = data[lo] == 45
        lo += 1
    if lo == hi:
        return 0, _NOT_INT
    value = 0
    digits = 0
    after_digit = False
    for i in range(lo, hi):
        b = data[i]
        if 48 <= b <= 57:
            value = value * 10 + (b - 48)
            digits += 1
            after_digit = True
        elif b == 95 and after_digit:  # one underscore between digits
            after_digit = False
        else:
            return 0, _NOT_INT
    if not after_digit:
        return 0, _NOT_INT
    if digits > 18:
        return 0, _ASK_PYTHON
    return (-value if negative else value), _INT


@njit(cache=True, inline="always")
def _double(data, pos):
    bits = np.uint64(0)
    for b in range(8):
        bits |= np.uint64(data[pos + b]) << np.uint64(8 * b)
    return bits


@njit(cache=True)
def decode_block(
    data, count, by_name, intercept_name,
    id_data, id_ptr, intercepts, counts, values, index, ask, key_data, key_ptr,
):  # fmt: skip
    """Decode ``count`` records of ``data`` (one block's bytes) into the outputs.

    Record ``r``: its id is ``id_data[id_ptr[r]:id_ptr[r + 1]]``, its intercept
    ``intercepts[r]``, and it has the next ``counts[r]`` triples of ``values, index, ask``: a
    triple with ``ask[c]`` is placed by its key, the next of ``key_data``/``key_ptr``
    (``name + 0xff + term`` if ``by_name``, else the name), the others have feature
    ``index[c]``. Names that are not integers (without ``by_name``) are left out. Every string
    is checked to be UTF-8, as fastavro decodes it.
    Returns (status, record, triples, keys).
    """
    bits = values.view(np.uint64)
    b_bits = intercepts.view(np.uint64)
    n_name = intercept_name.size
    c = 0
    k = 0
    pos = 0
    for r in range(count):
        start, end = _string(data, pos)
        if end < 0:
            return start, r, c, k
        high = 0
        for b in range(start, end):
            id_data[id_ptr[r] + b - start] = data[b]
            high |= data[b]
        if high >= 0x80 and not _is_utf8(data, start, end):
            return BAD_UTF8, r, c, k
        id_ptr[r + 1] = id_ptr[r] + end - start
        start, pos = _optional_string(data, end)  # modelClass
        if pos < 0:
            return start, r, c, k
        if not _is_utf8(data, start, pos):
            return BAD_UTF8, r, c, k
        first = c
        for array in range(2):  # means, then variances (skipped)
            if array == 1:
                branch, pos = _long(data, pos)
                if pos < 0:
                    return branch, r, c, k
                if branch == 0:
                    break
                if branch != 1:
                    return BAD_UNION, r, c, k
            while True:
                items, pos = _long(data, pos)
                if pos < 0:
                    return items, r, c, k
                if items == 0:
                    break
                if items < 0:  # a block count followed by its size in bytes
                    items = -items
                    size, pos = _long(data, pos)
                    if pos < 0:
                        return size, r, c, k
                for _ in range(items):
                    n_lo, n_hi = _string(data, pos)
                    if n_hi < 0:
                        return n_lo, r, c, k
                    t_lo, t_hi = _string(data, n_hi)
                    if t_hi < 0:
                        return t_lo, r, c, k
                    if t_hi + 8 > data.size:
                        return TRUNCATED, r, c, k
                    pos = t_hi + 8
                    for b in range(n_lo, t_hi):  # the name, the term's length, the term
                        if data[b] >= 0x80:
                            if not (_is_utf8(data, n_lo, n_hi) and _is_utf8(data, t_lo, t_hi)):
                                return BAD_UTF8, r, c, k
                            break
                    if array == 1:
                        continue
                    if t_lo == t_hi and n_hi - n_lo == n_name:  # INTERCEPT's term is ""
                        same = True
                        for b in range(n_name):
                            if data[n_lo + b] != intercept_name[b]:
                                same = False
                                break
                        if same:
                            b_bits[r] = _double(data, t_hi)
                            continue
                    if by_name:
                        kind = _ASK_PYTHON
                    else:
                        j, kind = _parse_int(data, n_lo, n_hi)
                        if kind == _NOT_INT:
                            continue
                        index[c] = j
                    ask[c] = kind == _ASK_PYTHON
                    if kind == _ASK_PYTHON:
                        at = key_ptr[k]
                        for b in range(n_lo, n_hi):
                            key_data[at] = data[b]
                            at += 1
                        if by_name:
                            key_data[at] = 0xFF
                            at += 1
                            for b in range(t_lo, t_hi):
                                key_data[at] = data[b]
                                at += 1
                        key_ptr[k + 1] = at
                        k += 1
                    bits[c] = _double(data, t_hi)
                    c += 1
        counts[r] = c - first
        start, pos = _optional_string(data, pos)  # lossFunction
        if pos < 0:
            return start, r, c, k
        if not _is_utf8(data, start, pos):
            return BAD_UTF8, r, c, k
    if pos != data.size:
        return TRAILING, count, c, k
    return OK, count, c, k


# The varint and string readers, public for the other compiled Avro decoders
# (:mod:`raymix.data.avro.photon_kernels`).
long_at = _long
string_at = _string
