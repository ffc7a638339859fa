"""Compiled kernels behind :mod:`raymix.data.tfrecord.example_reader` (private; use ``read_examples``).

A TFRecord stream is a sequence of records, each (little endian)

    uint64 length | uint32 masked CRC-32C of the length bytes | data | uint32 masked CRC-32C of data

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32)``. Each ``data`` is a
serialized ``tf.train.Example``:

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }      (entries: key = 1, value = 2)
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                            Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }
    Int64List { repeated int64 value = 1; }

A protobuf message is a sequence of fields ``tag | payload`` where ``tag`` is the varint
``field << 3 | wire`` and the payload is a varint (wire 0), 8 bytes (1), a varint length and
that many bytes (2), fields up to the matching end-group tag (3 .. 4) or 4 bytes (5).
Decoding follows protobuf's merge rules: unknown fields are skipped by wire type, a repeated
scalar may be packed (wire 2) or not (wire 0 / 5) in any mix, a sub-message seen twice is
merged (its values concatenated), the last field of a oneof wins, and the last map entry of
a key wins. An empty ``Feature`` (no kind) counts as absent.

Kinds are the ``Feature`` field numbers: ``BYTES = 1``, ``FLOAT = 2``, ``INT64 = 3`` (``0``:
none). Status codes say what went wrong and where (the record, the requested key). All
kernels are ``cache=True`` and always called with the same argument types (a read-only uint8
``buf``, int64 everything else), so each compiles once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE, BYTES, FLOAT, INT64 = 0, 1, 2, 3
OK, MALFORMED, MISSING, WRONG_KIND, WRONG_COUNT = 0, 1, 2, 3, 4
PARTIAL_HEADER, BAD_LENGTH_CRC, PARTIAL_RECORD, BAD_DATA_CRC = 5, 6, 7, 8

# The kernels allocate nothing (the caller passes every array), so they are compiled without
# numba's reference counting (``_nrt=False``): counting the array arguments of the per-field
# helpers, which numba cannot prune in their loops, cost 3-4x the parsing itself. The small
# helpers are inlined by LLVM (``forceinline``; numba's IR-level ``inline="always"`` made
# these loops ~10x slower). Measured on movieLens: 270 ms -> 45 ms for both passes.
_kernel = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]  # not in stubs
_inline = njit(cache=True, nogil=True, _nrt=False, forceinline=True)  # type: ignore[call-overload]

_FEATURES = 1 << 3 | 2  # Example.features, Features.feature, entry key: field 1, wire 2
_VALUE = 2 << 3 | 2  # entry value: field 2, wire 2


# ----------------------------------------------------------------------------- framing


@njit(cache=True, nogil=True)
def crc_tables():
    """Slicing-by-8 tables of CRC-32C (reflected polynomial 0x82F63B78)."""
    t = np.empty((8, 256), np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (t[k - 1, i] >> 8) ^ t[0, t[k - 1, i] & 0xFF]
    return t


@_kernel
def _masked_crc(buf, start, end, t):
    c = 0xFFFFFFFF
    p = start
    while end - p >= 8:
        lo = c ^ (buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16 | np.int64(buf[p + 3]) << 24)
        c = (
            t[7, lo & 0xFF]
            ^ t[6, (lo >> 8) & 0xFF]
            ^ t[5, (lo >> 16) & 0xFF]
            ^ t[4, lo >> 24]
            ^ t[3, buf[p + 4]]
            ^ t[2, buf[p + 5]]
            ^ t[1, buf[p + 6]]
            ^ t[0, buf[p + 7]]
        )
        p += 8
    while p < end:
        c = t[0, (c ^ buf[p]) & 0xFF] ^ (c >> 8)
        p += 1
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@_inline
def _u32(buf, p):
    return buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16 | np.int64(buf[p + 3]) << 24


@_inline
def _u64(buf, p):
    """The little-endian uint64 at ``p`` as an int64 (negative above 2**63 - 1)."""
    v = np.int64(0)
    for i in range(8):
        v |= np.int64(buf[p + i]) << (8 * i)
    return v


@_kernel
def frame(buf, t):
    """Check the framing and both CRCs of every record: ``(status, records)``; ``t`` is
    ``crc_tables()``.

    On failure, ``records`` is the number of good records before the bad one (its row).
    """
    size = len(buf)
    n = 0
    p = 0
    while p < size:
        if size - p < 12:
            return PARTIAL_HEADER, n
        if _masked_crc(buf, p, p + 8, t) != _u32(buf, p + 8):
            return BAD_LENGTH_CRC, n
        length = _u64(buf, p)
        if length < 0 or length > size - p - 16:
            return PARTIAL_RECORD, n
        start = p + 12
        end = start + length
        if _masked_crc(buf, start, end, t) != _u32(buf, end):
            return BAD_DATA_CRC, n
        p = end + 4
        n += 1
    return OK, n


# ----------------------------------------------------------------------------- wire format


@_inline
def _varint(buf, p, end):
    """``(value, p)`` after the varint at ``p``, its 64 bits as an int64 (two's complement);
    ``p = -1`` if it runs past ``end`` or over 10 bytes."""
    if p < end:
        b = np.int64(buf[p])
        if b < 0x80:  # one byte: most tags, lengths and small values
            return b, p + 1
    value = np.int64(0)
    shift = 0
    while p < end and shift < 64:
        b = np.int64(buf[p])
        p += 1
        value |= (b & 0x7F) << shift  # bits beyond 64 are dropped, as protobuf does
        if b < 0x80:
            return value, p
        shift += 7
    return value, -1


@_inline
def _tag(buf, p, end):
    """``(tag, p)``; ``p = -1`` for a bad varint or field number 0 or above 2**29 - 1."""
    v, p = _varint(buf, p, end)
    if p < 0 or v < 8 or v > 0xFFFFFFFF:
        return 0, -1
    return v, p


@_inline
def _length(buf, p, end):
    """``(n, p)`` for a length prefix whose ``n`` bytes fit before ``end``; ``p = -1`` if not."""
    v, p = _varint(buf, p, end)
    if p < 0 or v < 0 or v > end - p:
        return 0, -1
    return v, p


@_kernel
def _skip_payload(buf, p, end, wire):
    """Position after a non-group payload of wire type ``wire`` at ``p``, or -1."""
    if wire == 0:
        _, p = _varint(buf, p, end)
        return p
    if wire == 1:
        return p + 8 if end - p >= 8 else -1
    if wire == 2:
        n, p = _length(buf, p, end)
        return p + n if p >= 0 else -1
    if wire == 5:
        return p + 4 if end - p >= 4 else -1
    return -1


@_kernel
def _skip(buf, p, end, tag):
    """Position after the payload of the field ``tag`` (an unknown field) at ``p``, or -1."""
    if tag & 7 != 3:
        return _skip_payload(buf, p, end, tag & 7)
    depth = 1  # a group: skip fields, nested groups included, up to the matching end tag
    while depth > 0:
        inner, p = _tag(buf, p, end)
        if p < 0:
            return -1
        wire = inner & 7
        if wire == 3:
            depth += 1
        elif wire == 4:
            depth -= 1
            if depth == 0 and inner >> 3 != tag >> 3:
                return -1
        else:
            p = _skip_payload(buf, p, end, wire)
            if p < 0:
                return -1
    return p


# ----------------------------------------------------------------------------- Example
#
# Each walk returns -1 (or False) as soon as a message is malformed. (Returning at once, with
# the position known to be >= 0 afterwards, compiles to much faster loops than carrying a
# -1 position to the loop's condition.)


@_inline
def _match(buf, start, end, keys, key_offsets):
    """Index of the requested key equal to ``buf[start:end]``, or -1."""
    n = end - start
    for k in range(len(key_offsets) - 1):
        k0 = key_offsets[k]
        if key_offsets[k + 1] - k0 == n:
            i = 0
            while i < n and keys[k0 + i] == buf[start + i]:
                i += 1
            if i == n:
                return k
    return -1


@_inline
def _entry(buf, p, end, keys, key_offsets, fstart, fend):
    """Read the ``Features.feature`` map entry ``buf[p:end]``: if its key is requested, note
    the span of its ``Feature`` (a later entry overwrites). False if malformed."""
    k0 = k1 = v0 = v1 = p  # a missing key is ""; a missing value an empty Feature
    while p < end:
        tag, p = _tag(buf, p, end)
        if p < 0:
            return False
        if tag in (_FEATURES, _VALUE):
            n, p = _length(buf, p, end)
            if p < 0:
                return False
            if tag == _FEATURES:
                k0, k1 = p, p + n
            else:
                v0, v1 = p, p + n
            p += n
        else:
            p = _skip(buf, p, end, tag)
            if p < 0:
                return False
    k = _match(buf, k0, k1, keys, key_offsets)
    if k >= 0:
        fstart[k] = v0
        fend[k] = v1
    return True


@_kernel
def _find_features(buf, p, end, keys, key_offsets, fstart, fend):
    """Note the ``Feature`` span of each requested key of the Example ``buf[p:end]`` in
    ``fstart``/``fend`` (keys not found keep ``fstart = -1``). False if malformed."""
    while p < end:
        tag, p = _tag(buf, p, end)
        if p < 0:
            return False
        if tag != _FEATURES:
            p = _skip(buf, p, end, tag)
            if p < 0:
                return False
            continue
        n, p = _length(buf, p, end)  # Example.features: walk the Features message
        if p < 0:
            return False
        stop = p + n
        while p < stop:
            tag, p = _tag(buf, p, stop)
            if p < 0:
                return False
            if tag != _FEATURES:
                p = _skip(buf, p, stop, tag)
                if p < 0:
                    return False
                continue
            n, p = _length(buf, p, stop)  # Features.feature: one map entry
            if p < 0 or not _entry(buf, p, p + n, keys, key_offsets, fstart, fend):
                return False
            p += n
    return True


@_inline
def _feature_kind(buf, p, end):
    """``(kind, run)``: the last oneof field of the Feature ``buf[p:end]`` and where the final
    run of that field starts (lists of it before a switch of kind were cleared); kind -1 if
    malformed."""
    kind, run = NONE, p
    while p < end:
        at = p
        tag, p = _tag(buf, p, end)
        if p < 0:
            return -1, run
        field = tag >> 3
        if tag & 7 == 2 and BYTES <= field <= INT64:
            n, p = _length(buf, p, end)
            if p < 0:
                return -1, run
            p += n
            if field != kind:
                kind, run = field, at
        else:
            p = _skip(buf, p, end, tag)
            if p < 0:
                return -1, run
    return kind, run


@_inline
def _list_values(buf, p, end, kind, at, fill, out32, out64, bstart, blen):
    """Count (and if ``fill``, store from slot ``at``) the values of the Bytes/Float/Int64List
    ``buf[p:end]``, or -1 if malformed. Floats go out as their uint32 bits, int64s as they
    are, bytes as ``(start, length)`` spans of ``buf``."""
    count = 0
    while p < end:
        tag, p = _tag(buf, p, end)
        if p < 0:
            return -1
        if tag == 1 << 3 | 2:  # one bytes value, or packed floats / varints
            n, p = _length(buf, p, end)
            if p < 0:
                return -1
            stop = p + n
            if kind == BYTES:
                if fill:
                    bstart[at + count] = p
                    blen[at + count] = n
                count += 1
            elif kind == FLOAT:
                if n & 3:
                    return -1
                if fill:
                    for i in range(n >> 2):
                        out32[at + count + i] = _u32(buf, p + 4 * i)
                count += n >> 2
            else:
                while p < stop:
                    v, p = _varint(buf, p, stop)
                    if p < 0:
                        return -1
                    if fill:
                        out64[at + count] = v
                    count += 1
            p = stop
        elif tag == 1 << 3 | 5 and kind == FLOAT:  # one unpacked float
            if end - p < 4:
                return -1
            if fill:
                out32[at + count] = _u32(buf, p)
            count += 1
            p += 4
        elif tag == 1 << 3 | 0 and kind == INT64:  # one unpacked varint
            v, p = _varint(buf, p, end)
            if p < 0:
                return -1
            if fill:
                out64[at + count] = v
            count += 1
        else:
            p = _skip(buf, p, end, tag)
            if p < 0:
                return -1
    return count


@_inline
def _feature_values(buf, p, end, kind, at, fill, out32, out64, bstart, blen):
    """Values of every ``kind`` list of the Feature ``buf[p:end]`` (from its final run of
    that kind: merged, in order), or -1 if malformed."""
    count = 0
    while p < end:
        tag, p = _tag(buf, p, end)
        if p < 0:
            return -1
        if tag == kind << 3 | 2:
            n, p = _length(buf, p, end)
            if p < 0:
                return -1
            c = _list_values(buf, p, p + n, kind, at + count, fill, out32, out64, bstart, blen)
            if c < 0:
                return -1
            count += c
            p += n
        else:
            p = _skip(buf, p, end, tag)
            if p < 0:
                return -1
    return count


@_kernel
def decode(
    buf,
    n,
    keys,
    key_offsets,
    want_kind,
    want_count,
    fill,
    splits,
    base,
    out32,
    out64,
    bstart,
    blen,
    fstart,
    fend,
):
    """Decode the requested keys of the ``n`` framed records of ``buf`` (already ``frame``-d).

    Key ``k`` is ``keys[key_offsets[k]:key_offsets[k + 1]]``; its records must hold a
    ``want_kind[k]`` list (or none at all) with exactly ``want_count[k]`` values, or any
    number when ``want_count[k] < 0``, where an absent key is an empty row.

    Count pass (``fill`` false): ``splits[k, r + 1]`` = values of key ``k`` in record ``r``.
    Fill pass (``splits`` now cumulative): record ``r``'s values of key ``k`` go to slots
    ``base[k] + splits[k, r] ...`` of ``out32`` (FLOAT), ``out64`` (INT64) or
    ``bstart``/``blen`` (BYTES). Returns ``(status, record, key, detail)``; detail is the kind
    found (WRONG_KIND) or the value count (WRONG_COUNT); key is -1 when not known.
    ``fstart``/``fend`` are scratch, one slot per key.
    """
    nkeys = len(want_kind)
    status, bad_key, detail = OK, -1, 0
    p = 0
    r = 0
    while r < n and status == OK:
        start = p + 12
        end = start + _u64(buf, p)
        fstart[:] = -1
        if not _find_features(buf, start, end, keys, key_offsets, fstart, fend):
            status = MALFORMED
        k = 0
        while k < nkeys and status == OK:
            kind, run = NONE, 0
            if fstart[k] >= 0:
                kind, run = _feature_kind(buf, fstart[k], fend[k])
            count = 0
            if kind < 0:
                status = MALFORMED
            elif kind == NONE:
                if want_count[k] >= 0:
                    status = MISSING
            elif kind != want_kind[k]:
                status, detail = WRONG_KIND, kind
            else:
                at = base[k] + splits[k, r] if fill else 0
                count = _feature_values(
                    buf, run, fend[k], kind, at, fill, out32, out64, bstart, blen
                )
                if count < 0:
                    status = MALFORMED
                elif want_count[k] >= 0 and count != want_count[k]:
                    status, detail = WRONG_COUNT, count
            if status == OK:
                if not fill:
                    splits[k, r + 1] = count
                k += 1
            else:
                bad_key = k
        if status == OK:
            p = end + 4
            r += 1
    return status, r, bad_key, detail


@_kernel
def gather(buf, bstart, blen, offsets, data):
    """Copy the byte spans into ``data``; ``offsets`` (len + 1) gets their cumulative ends."""
    at = 0
    offsets[0] = 0
    for i in range(len(bstart)):
        s, n = bstart[i], blen[i]
        for j in range(n):
            data[at + j] = buf[s + j]
        at += n
        offsets[i + 1] = at
