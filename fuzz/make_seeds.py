#!/usr/bin/env python3
"""Writes the hand-made seed inputs for netloop's fuzz targets.

Usage: python3 fuzz/make_seeds.py [OUT_DIR]   (default: fuzz/seeds)

Each seed is written as OUT_DIR/<target>/seed-<name>, in the input layout
of fuzz/src/checks.rs: u16 LE max, u8 cut count, u16 LE cut points, data.
The seeds are committed (fuzz/seeds/) and passed to `cargo fuzz run` as a
second, read-only corpus directory; tests/fuzz_corpus.rs replays them too.
Edit this script and re-run it to change them.
"""
import os
import struct
import sys


def encode(max_len, cuts, data):
    assert len(cuts) <= 16
    return struct.pack("<HB", max_len, len(cuts)) + b"".join(struct.pack("<H", c) for c in cuts) + data


LINES = {
    "simple": encode(100, [3, 8], b"hello\nworld\n"),
    "crlf_and_lone_cr": encode(100, [2, 3, 9], b"a\r\nb\rc\n\r\r\n\rx\n"),
    "empty_lines_max0": encode(0, [1], b"\n\r\n\n"),
    "exactly_max_and_over": encode(3, [4], b"abc\nabc\r\nabcd\n"),
    "max_plus_one_cr_pending": encode(3, [4], b"abc\r\n"),
    "max_plus_one_cr_then_x": encode(3, [4], b"abc\rx\n"),
    "cr_split_from_lf": encode(300, [301], b"x" * 300 + b"\r\n" + b"y" * 50 + b"\n"),
    "long_tail_4096": encode(4096, [1000, 4096], b"z" * 4097),
    "long_line_4096_crlf": encode(4096, [4095, 4096, 4097], b"q" * 4096 + b"\r\ntail"),
    "chat_session": encode(
        200, [5, 17, 40], b"/nick ann\r\nhello everyone\r\n/join #rust\n\n/quit\r\n"
    ),
    "binary_junk": encode(64, [7, 100, 200], bytes(range(256)) + b"\n\r\n"),
    "one_byte_chunks": encode(16, list(range(1, 17)), b"ab\r\ncd\n\r\ne\rf\n"),
}

HUB = {
    "back_to_back": encode(100, [3, 7], b'{"a":1}{"b":2}'),
    "whitespace": encode(100, [4, 10], b' \t\r\n{"a":1}\r\n \n\t[1,2]  {}\n'),
    "nested": encode(100, [5, 20], b'[[1,[2,{"a":[3]}]],[]]{"x":{"y":{}}}'),
    "escaped_quotes": encode(100, [11, 12, 13], b'{"a":"say \\"}\\" ok"}{"b":"x\\\\"}{"c":"\\\\\\""}'),
    "brackets_in_strings": encode(100, [6], b'{"a":"}]{["}{"b":"x}"}'),
    "junk_lines": encode(100, [2, 15], b'hello {"a":1} world\n{"b":2}\n42\n"s"\n}\n{}x{}\n{}'),
    "newline_in_value": encode(100, [6], b'{"a":\n{"b":1}{"a":"x\ny"}\n{"a":"\\\n{}'),
    "depth_limit": encode(
        4096, [128, 300], b"[" * 128 + b"]" * 128 + b"\n" + b"[" * 129 + b"]" * 129 + b"\n{}"
    ),
    "too_large": encode(4096, [2000], b'{"a":"' + b"x" * 5000 + b'"}'),
    "exactly_max": encode(8, [4], b'{"a":12}{"a":123}'),
    "max0": encode(0, [], b" \n{}"),
    "hub_messages": encode(
        300,
        [10, 40, 80],
        b'{"type":"hello","clientName":"ann","token":"s3cret"}\n'
        b'{"type":"join","room":"lobby"}{"type":"chat","message":"hi \\"all\\"","room":"lobby"}\r\n'
        b'{"type":"direct","to":"bob","message":"\\u00e9\\ud83d\\ude00"}\n[{"type":"chat"}]\n',
    ),
    "values": encode(
        500, [9], b'{"n":-1.5e10,"t":true,"f":false,"z":null,"big":123456789012345678901234567890,"inf":1e400}'
    ),
    "invalid_but_framed": encode(100, [3], b'{"a":1]{,}[1,]{"a" 1}{"a":"\\x"}{"\xff\xfe":0}["\x01"]'),
    "duplicate_keys": encode(100, [], b'{"type":"a","type":"b"}'),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
    for target, seeds in (("line_splitter", LINES), ("hub_frames", HUB)):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
