"""Java's own SimpleDateFormat against Headrace's, character for character (issue 12).

A small Java program (tests/java/JavaDates.java, compiled here with ``javac``) formats several hundred
instants (fixed seed: years 1–9999, before 1970, around DST switches, around New Year, around the
1582 calendar switch) with every pattern letter in several run lengths, in UTC and in two DST time
zones, and parses text back. Headrace formats and parses the same over whole Arrow arrays. A JDK is
required (see the README); without ``javac`` and ``java`` the test fails, it never skips.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from integrations.transforms.timefmt import format_timestamps, parse_timestamps

JAVA_SOURCE = Path(__file__).resolve().parents[1] / "java" / "JavaDates.java"
ZONES = ["UTC", "Europe/Berlin", "America/New_York"]
DAY = 86_400_000
YEAR_1 = -62_135_596_800_000          # 0001-01-01T00:00Z (proleptic Gregorian)
YEAR_10000 = 253_402_300_800_000      # 10000-01-01T00:00Z

RUNS = {"G": (1, 4), "y": (1, 2, 3, 4, 5), "Y": (1, 2, 3, 4), "M": (1, 2, 3, 4, 5), "L": (1, 2, 3, 4),
        "d": (1, 2, 3), "D": (1, 2, 3, 4), "F": (1, 2), "w": (1, 2, 3), "W": (1, 2), "E": (1, 3, 4, 5),
        "u": (1, 2), "a": (1, 2), "H": (1, 2, 3), "k": (1, 2), "K": (1, 2), "h": (1, 2), "m": (1, 2, 3),
        "s": (1, 2, 3), "S": (1, 2, 3, 4, 6), "z": (1, 2, 3), "Z": (1, 2, 4, 5), "X": (1, 2, 3)}
COMPOSITE = [
    "yyyy-MM-dd HH:mm:ss.SSS", "YYYYMM", "yyyyMMdd", "YYYY-'W'ww-u", "EEE, d MMM yyyy HH:mm:ss Z",
    "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "hh 'o''clock' a, zzz", "K:mm a, z", "yyyy.MM.dd G 'at' HH:mm:ss z",
    "EEE MMM dd HH:mm:ss zzz yyyy", "yyMMddHHmmssZ", "D 'day' F W w Y", "''", "'literal only'",
    "yyyy-MM-dd'T'HH:mm:ss.SSSX", "kk:mm:ss.S",
]
PARSE_PATTERNS = [
    "yyyy-MM-dd HH:mm:ss.SSS", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
    "EEE, d MMM yyyy HH:mm:ss.SSS Z", "yyyyMMddHHmmssSSS", "yy-M-d h:m:s.S a", "G yyyy-MM-dd HH:mm:ss.SSS",
    "yyyy-DDD HH:mm:ss.SSS", "dd MMMM yyyy kk:mm:ss.SSS XX", "MMM d, yyyy K:mm:ss.SSS a X",
    "d/M/y H:m:s.S",
]
# Hand-written text: Java's leniency, whitespace, trailing text, names, the calendar switch
PARSE_TEXTS = [
    ("yyyy-MM-dd", "2024-02-30"), ("yyyy-MM-dd", "2024-13-01"), ("yyyy-MM-dd", "2024-0-0"),
    ("yyyy-MM-dd", "1500-02-29"), ("yyyy-MM-dd", "1582-10-10"), ("yyyy-MM-dd", "1582-10-04"),
    ("yyyy-MM-dd", "1582-10-15"), ("yyyy-MM-dd", "0001-01-01"), ("yyyy-MM-dd", "2024-01-01 trailing"),
    ("yyyy-MM-dd", "2024- 1- 5"), ("yyyy-MM-dd", "2024-01"), ("yyyy-MM-dd", "x2024-01-01"),
    ("yyyy-MM-dd HH:mm", "2024-01-01 24:00"), ("yyyy-MM-dd HH:mm", "2024-01-01 25:61"),
    ("yyyy-MM-dd hh:mm a", "2024-01-01 12:30 am"), ("yyyy-MM-dd hh:mm a", "2024-01-01 12:30 PM"),
    ("yyyy-MM-dd KK:mm a", "2024-01-01 11:30 pm"), ("yyyy-MM-dd kk:mm", "2024-01-01 24:30"),
    ("yyyy-MM-dd a", "2024-01-01 PM"), ("yyyy-MM-dd HH a", "2024-01-01 05 PM"),
    ("yyyy-MM-dd hh HH", "2024-01-01 05 07"), ("yyyy-MM-dd HH hh a", "2024-01-01 05 07 PM"),
    ("d MMM yyyy", "5 JANUARY 2024"), ("d MMM yyyy", "5 sep 2024"), ("d MMMM yyyy", "5 Sep 2024"),
    ("d MMM yyyy", "5 Sept 2024"), ("EEE d MMM yyyy", "fri 5 jan 2024"), ("EEE d MMM yyyy", "Monday 5 Jan 2024"),
    ("yyyyMMdd", "20240105"), ("yyyyMMdd", "2024015"), ("yyyyMMddHHmm", "202401051230"),
    ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00+0530"), ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00-2359"),
    ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00GMT+5:30"), ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00gmt"),
    ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00 +0100"), ("yyyy-MM-dd'T'HH:mm:ssz", "2024-01-05T12:30:00UTC"),
    ("yyyy-MM-dd'T'HH:mm:ssZ", "2024-01-05T12:30:00+2400"), ("yyyy-MM-dd'T'HH:mm:ssX", "2024-01-05T12:30:00Z"),
    ("yyyy-MM-dd'T'HH:mm:ssX", "2024-01-05T12:30:00-08"), ("yyyy-MM-dd'T'HH:mm:ssXX", "2024-01-05T12:30:00-0830"),
    ("yyyy-MM-dd'T'HH:mm:ssXXX", "2024-01-05T12:30:00+05:45"), ("yyyy-MM-dd'T'HH:mm:ssXXX", "2024-01-05T12:30:00+0545"),
    ("yy-MM-dd", "00-01-01"), ("yy-MM-dd", "99-12-31"), ("yy-MM-dd", "2024-01-01"), ("yy-MM-dd", "5-01-01"),
    ("yyyy-MM-dd HH:mm:ss.S", "2024-01-01 00:00:00.5"), ("yyyy-MM-dd HH:mm:ss.S", "2024-01-01 00:00:00.123456"),
    ("yyyy-MM-dd HH:mm:ss.SSS", "1969-12-31 23:59:58.500"), ("yyyy-MM-dd HH:mm:ss.SSS", "1969-12-31 23:59:59.999"),
    ("G yyyy-MM-dd", "BC 0001-12-31"), ("G yyyy-MM-dd", "ad 0044-03-15"), ("yyyy-DDD", "1582-278"),
    ("yyyy-DDD", "2024-366"), ("yyyy-DDD", "2023-400"), ("HH:mm", "13:45"), ("MMM yyyy", "Feb 2024"),
    ("'at' HH 'o''clock'", "at 07 o'clock"), ("yyyy MM dd", "2024\t01\t05"),
]


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], list[str]]:
    """Run JavaDates over request lines; its output lines, one per request."""
    javac, java_bin = shutil.which("javac"), shutil.which("java")
    if not javac or not java_bin:
        pytest.fail("this test needs a JDK (javac and java on PATH), as the README requires", pytrace=False)
    classes = tmp_path_factory.mktemp("javadates")
    subprocess.run([javac, "-d", str(classes), str(JAVA_SOURCE)], check=True, capture_output=True, text=True)

    def run(lines: list[str]) -> list[str]:
        done = subprocess.run([java_bin, "-Duser.timezone=UTC", "-cp", str(classes), "JavaDates"],
                              input="".join(line + "\n" for line in lines), capture_output=True,
                              encoding="utf-8", check=False, timeout=300)
        assert done.returncode == 0, done.stderr
        out = done.stdout.split("\n")[:-1]
        assert len(out) == len(lines), done.stderr
        return out

    return run


def _transitions(zone: str, year: int) -> list[int]:
    """The UTC instants (ms) where ``zone`` changes its offset during ``year``."""
    tz = zoneinfo.ZoneInfo(zone)

    def offset(sec: int) -> dt.timedelta:
        return dt.datetime.fromtimestamp(sec, tz).utcoffset()

    start = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())
    found = []
    for day in range(366):
        lo, hi = start + day * 86_400, start + (day + 1) * 86_400
        if offset(lo) != offset(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            found.append(hi * 1000)
    return found


def _instants() -> list[int]:
    rnd = random.Random(12)
    out = [0, 1, -1, -999, -1000, -1001, -1500, 999, 1000, -DAY, -DAY - 1, YEAR_1, YEAR_1 - 1, YEAR_10000 - 1]
    out += [rnd.randrange(YEAR_1, YEAR_10000) for _ in range(200)]                     # years 1–9999
    out += [rnd.randrange(-2_208_988_800_000, 0) for _ in range(60)]                   # 1900–1969
    out += [-12_219_292_800_000 + d * DAY + rnd.randrange(DAY) for d in range(-20, 21)]  # 1582 switch
    for zone in ZONES[1:]:                                                             # DST switches
        for year in (1916, 1945, 1947, 1970, 1980, 1996, 2007, 2024, 2037, 2038, 2050, 2099, 2101):
            for t in _transitions(zone, year):
                out += [t + d for d in (-3_600_001, -3_600_000, -1000, -1, 0, 1, 3_599_999, 3_600_000, 7_200_000)]
    years = [1, 2, 100, 1000, 1500, 1581, 1582, 1583, 1600, 1700, 1900, 1969, 1970, 2020, 2021, 2022, 2025,
             2026, 2037, 2038, 2100, 9998] + rnd.sample(range(1584, 9999), 8)
    for year in years:                                                                 # New Year
        new_year = (dt.date(year + 1, 1, 1) - dt.date(1970, 1, 1)).days * DAY
        for d in range(-4, 7):
            for h in (0, 5, 23):
                out.append(new_year + d * DAY + h * 3_600_000 - (1 if h == 5 else 0))
    return out


def _patterns() -> list[str]:
    return [letter * n for letter, runs in RUNS.items() for n in runs] + COMPOSITE


def _report(mismatches: list[tuple], total: int, what: str) -> str:
    lines = [f"{len(mismatches)} of {total} {what} differ from Java; first ones:"]
    lines += [f"  {m}" for m in mismatches[:25]]
    return "\n".join(lines)


def test_format_matches_java(java):
    instants, patterns = _instants(), _patterns()
    assert len(instants) > 500
    requests = [(zone, p, t) for zone in ZONES for p in patterns for t in instants]
    expected = java([f"F\t{zone}\t{p}\t{t}" for zone, p, t in requests])
    got: list[str] = []
    for zone in ZONES:
        column = pa.array(instants, pa.timestamp("ms", tz=zone))
        for p in patterns:
            got += format_timestamps(column, p).to_pylist()
    mismatches = [(zone, p, t, dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=t), f"java={j!r}", f"headrace={h!r}")
                  for (zone, p, t), j, h in zip(requests, expected, got, strict=True) if j != h]
    assert not mismatches, _report(mismatches, len(requests), "formatted values")


def test_parse_matches_java(java):
    instants = _instants()
    texts: list[tuple[str, str]] = []
    for zone in ("UTC", "Europe/Berlin"):
        column = pa.array(instants, pa.timestamp("ms", tz=zone))
        for p in PARSE_PATTERNS:
            texts += [(p, s) for s in format_timestamps(column, p).to_pylist()]
    java_text = java([f"F\t{zone}\t{p}\t{t}" for zone in ("UTC", "Europe/Berlin") for p in PARSE_PATTERNS
                      for t in instants])
    assert java_text == [s for _, s in texts], "formatting differs; see test_format_matches_java"
    texts += PARSE_TEXTS
    expected = java([f"P\tUTC\t{p}\t{s}" for p, s in texts])
    mismatches = []
    by_pattern: dict[str, list[int]] = {}
    for i, (p, _) in enumerate(texts[:-len(PARSE_TEXTS)]):
        by_pattern.setdefault(p, []).append(i)
    got: dict[int, str] = {}
    for p, rows in by_pattern.items():
        parsed = parse_timestamps(pa.array([texts[i][1] for i in rows]), p).cast(pa.int64()).to_pylist()
        got.update({i: str(v) for i, v in zip(rows, parsed, strict=True)})
    for i in range(len(texts) - len(PARSE_TEXTS), len(texts)):   # one by one: Java may refuse some
        p, s = texts[i]
        try:
            got[i] = str(parse_timestamps(pa.array([s]), p).cast(pa.int64())[0].as_py())
        except ValueError:
            got[i] = "ERR"
    for i, (p, s) in enumerate(texts):
        if expected[i] != got[i]:
            mismatches.append((p, s, f"java={expected[i]}", f"headrace={got[i]}"))
    assert not mismatches, _report(mismatches, len(texts), "parsed values")
