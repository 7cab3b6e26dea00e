"""Word-at-a-time helpers for the flat Avro codec: 8 bytes per numpy operation instead of one.

A zig-zag varint of up to 8 bytes is built or read with a few shifts and masks on a 64-bit word
(SWAR, "SIMD within a register"), and a byte buffer is read or written 8 bytes at a time through an
unaligned, strided ``uint64`` view of it. Bytes 9 and 10 of a long varint are handled separately,
only for the rows that need them.
"""

from __future__ import annotations

import numpy as np

U64 = np.uint64
CONT = U64(0x8080808080808080)  # the continuation bit of every byte
ONES = U64(0x0101010101010101)
SEVEN = U64(0x7F7F7F7F7F7F7F7F)
ALL = U64(0xFFFFFFFFFFFFFFFF)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=U64)  # first k bytes set, k = 0..8


def thermo(m: np.ndarray, byte: np.uint64) -> np.ndarray:
    """Per row, a word whose first ``min(m, 8)`` bytes are ``byte`` and the rest zero (``m >= 0``)."""
    return _LOW_BYTES[np.minimum(m, 8)] & byte


def word_view(buf: np.ndarray) -> np.ndarray:
    """An unaligned little-endian ``uint64`` view starting at every byte of ``buf`` (its last 7 excluded)."""
    return np.ndarray((max(len(buf) - 7, 0),), "<u8", buffer=buf, strides=(1,))


def column_words(mat: np.ndarray, offset: int) -> np.ndarray:
    """The unaligned 64-bit word at byte ``offset`` of every row of a C-contiguous uint8 matrix."""
    return np.ndarray((mat.shape[0],), "<u8", buffer=mat, offset=offset, strides=(mat.shape[1],))


def zigzag(v: np.ndarray) -> np.ndarray:
    """Avro's zig-zag mapping of int64 values, as uint64."""
    v = v.astype(np.int64, copy=False)
    return ((v << 1) ^ (v >> 63)).view(U64)


def varint_words(z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Varints of zig-zagged ``z``: (bytes 1-8 as a word, bytes 9-10 as a word or None, byte length)."""
    top = int(z.max()) if len(z) else 0
    groups = max(1, (top.bit_length() + 6) // 7)
    ln = np.ones(len(z), np.int64)
    for k in range(1, groups):
        ln += z >= U64(1 << (7 * k))
    x = z & U64((1 << 56) - 1) if groups > 8 else z  # spread eight 7-bit groups over eight bytes
    if groups > 4:  # (each step is a no-op when the values are too small to have its groups)
        x = ((x & U64(0x00FFFFFFF0000000)) << U64(4)) | (x & U64(0x000000000FFFFFFF))
    if groups > 2:
        x = ((x & U64(0x0FFFC0000FFFC000)) << U64(2)) | (x & U64(0x00003FFF00003FFF))
    if groups > 1:
        x = ((x & U64(0x3F803F803F803F80)) << U64(1)) | (x & U64(0x007F007F007F007F))
    x |= thermo(np.maximum(ln - 1, 0), CONT)
    high = None
    if groups > 8:
        high = ((z >> U64(56)) & U64(0x7F)) | ((ln > 9).astype(U64) << U64(7)) | ((z >> U64(63)) << U64(8))
    return x, high, ln


def read_varints(buf: np.ndarray, words: np.ndarray, p: np.ndarray, valid: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Zig-zag varints at byte positions ``p`` (rows where ``valid``): (int64 values, byte lengths).

    ``buf`` must have 16 readable bytes past every position. Returns None for a varint over 10 bytes.
    """
    b = buf[p]
    if not (b & 0x80).any():  # all one byte (string lengths under 64, small numbers): no word work
        small = b.astype(np.int64)
        return (small >> 1) ^ -(small & 1), np.ones(len(p), np.int64)
    w = words[p]
    stop = ~w & CONT  # the bytes that end a varint
    low = stop & (~stop + U64(1))  # the first of them
    ln = np.bitwise_count((low - U64(1)) & CONT).astype(np.int64) + 1
    x = w & (low | (low - U64(1))) & SEVEN  # squeeze the 7-bit groups back together
    x = ((x & U64(0x7F007F007F007F00)) >> U64(1)) | (x & U64(0x007F007F007F007F))
    x = ((x & U64(0x3FFF00003FFF0000)) >> U64(2)) | (x & U64(0x00003FFF00003FFF))
    x = ((x & U64(0x0FFFFFFF00000000)) >> U64(4)) | (x & U64(0x000000000FFFFFFF))
    long_ = stop == 0
    if valid is not None:
        long_ &= valid
    if long_.any():  # 9 or 10 bytes
        i = np.nonzero(long_)[0]
        b8, b9 = buf[p[i] + 8], buf[p[i] + 9]
        two = b8 >= 0x80
        if (two & (b9 > 1)).any():
            return None
        x[i] |= ((b8 & 0x7F).astype(U64) << U64(56)) | (np.where(two, b9, 0).astype(U64) << U64(63))
        ln[i] = 9 + two
    return (x >> U64(1)).view(np.int64) ^ -(x & U64(1)).view(np.int64), ln


def decimal_words(unscaled: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """int64 unscaled decimals → (minimal big-endian two's-complement bytes in a word's first bytes, length).

    The length is Java's ``BigInteger.toByteArray`` length (1..8), as Kafka Connect and fastavro write it.
    """
    mag = unscaled ^ (unscaled >> 63)
    ln = np.ones(len(unscaled), np.int64)
    for k in range(1, 8):
        ln += mag >= (1 << (8 * k - 1))
    if valid is not None:
        ln *= valid
    shift = ((8 - np.maximum(ln, 1)) << 3).astype(U64)
    return (unscaled.view(U64) << shift).byteswap(), ln


def decimal_from_words(words: np.ndarray, p: np.ndarray, ln: np.ndarray) -> np.ndarray:
    """Big-endian two's-complement values of ``ln`` (0..8) bytes at ``p`` → sign-extended int64."""
    be = words[p].byteswap().view(np.int64)
    shift = (8 - np.maximum(ln, 1)) << 3
    return np.where(ln > 0, be >> shift, 0)
