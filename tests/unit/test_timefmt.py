"""SimpleDateFormat parity of TimestampConverter and TimestampRouter: the examples of issue 12.

Every expected string here is what Java 17's ``SimpleDateFormat`` (locale en_US) prints for the same
instant, pattern and time zone; tests/integration/test_timefmt_java.py checks thousands more against
Java itself.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from integrations.transforms import Batch, TransformError, build_chain, primitive
from integrations.transforms.timefmt import compile_pattern, format_timestamps, parse_timestamps

UTC = dt.UTC


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=UTC).timestamp() * 1000)


def fmt(values: list[int | None], pattern: str, tz: str = "UTC", unit: str = "ms") -> list[str | None]:
    return format_timestamps(pa.array(values, pa.timestamp(unit, tz=tz)), pattern).to_pylist()


def parse(texts: list[str | None], pattern: str) -> list[int | None]:
    return parse_timestamps(pa.array(texts, pa.string()), pattern).cast(pa.int64()).to_pylist()


def run(transforms: list[dict], value: pa.Table, **meta) -> Batch:
    return build_chain(transforms).apply(Batch.of(value, **meta))


# --- item 2: before 1970 with milliseconds ----------------------------------------------------


def test_before_1970_milliseconds_are_floored():
    assert fmt([-1500, -1, -999, -1000, -1001], "yyyy-MM-dd HH:mm:ss.SSS") == [
        "1969-12-31 23:59:58.500", "1969-12-31 23:59:59.999", "1969-12-31 23:59:59.001",
        "1969-12-31 23:59:59.000", "1969-12-31 23:59:58.999"]


def test_timestamp_converter_before_1970():
    spec = {"type": "TimestampConverter.Value", "format": "yyyy-MM-dd HH:mm:ss.SSS"}
    out = run([{**spec, "target_type": "string"}], primitive(pa.array([-1500, -1])))
    assert out.value.column(0).to_pylist() == ["1969-12-31 23:59:58.500", "1969-12-31 23:59:59.999"]
    back = run([{**spec, "target_type": "unix"}], out.value)
    assert back.value.column(0).to_pylist() == [-1500, -1]


def test_finer_units_are_floored_to_milliseconds():
    assert fmt([-1], "HH:mm:ss.SSS", unit="ns") == ["23:59:59.999"]
    assert fmt([-1500], "HH:mm:ss.SSS", unit="us") == ["23:59:59.998"]
    assert fmt([-1], "HH:mm:ss", unit="s") == ["23:59:59"]


# --- item 3: week years -----------------------------------------------------------------------


def test_timestamp_router_docs_example_at_new_year():
    step = {"type": "TimestampRouter", "topic_format": "foo-${topic}-${timestamp}", "timestamp_format": "YYYYMM"}
    days = [ms(2021, 1, 1), ms(2022, 1, 1), ms(2018, 4, 15, 12), ms(2020, 12, 31)]
    out = run([step], pa.table({"x": [1, 2, 3, 4]}), topic="ordersTopic", timestamp=days)
    # Y is Java's week year: 2020-12-31 is in the week of 2021-01-01, so Java writes 202112 too
    assert out.topic.cast(pa.string()).to_pylist() == [
        "foo-ordersTopic-202101", "foo-ordersTopic-202201", "foo-ordersTopic-201804", "foo-ordersTopic-202112"]


def test_week_fields_follow_the_us_week_not_iso():
    days = [ms(2021, 1, 1), ms(2021, 1, 3), ms(2020, 12, 27), ms(2021, 12, 26), ms(2022, 1, 1)]
    assert fmt(days, "YYYY-ww w Y E") == ["2021-01 1 2021 Fri", "2021-02 2 2021 Sun", "2021-01 1 2021 Sun",
                                          "2022-01 1 2022 Sun", "2022-01 1 2022 Sat"]
    assert fmt([ms(2024, 1, 31)], "u F W") == ["3 5 5"]


# --- item 4: padding, S, X, the calendar ------------------------------------------------------


def test_numbers_are_padded_to_the_run_length():
    assert fmt([ms(2024, 1, 1, 5)], "d dd ddd D DDD M MM H HH y yy yyy yyyyy") == [
        "1 01 001 1 001 1 01 5 05 2024 24 2024 02024"]
    assert fmt([ms(2024, 2, 29), ms(2023, 3, 1)], "D DDD") == ["60 060", "60 060"]
    assert fmt([0], "k K h H") == ["24 0 12 0"]


def test_S_is_the_millisecond_count():
    assert fmt([ms(2024, 1, 1) + 999, ms(2024, 1, 1) + 5], "S SS SSS SSSS") == ["999 999 999 0999", "5 05 005 0005"]


def test_zone_letters_in_utc():
    assert fmt([0], "X XX XXX Z z") == ["Z Z Z +0000 UTC"]


@pytest.mark.parametrize(("tz", "instant", "expected"), [
    ("Europe/Berlin", ms(2024, 7, 1, 12), "2024-07-01 14:00 +0200 +02:00 CEST"),
    ("Europe/Berlin", ms(2024, 1, 15, 12), "2024-01-15 13:00 +0100 +01:00 CET"),
    ("America/New_York", ms(2024, 7, 1, 12), "2024-07-01 08:00 -0400 -04:00 EDT"),
    ("Europe/Berlin", ms(2050, 7, 1, 12), "2050-07-01 14:00 +0200 +02:00 CEST"),   # DST rules past 2037
    ("Europe/Berlin", ms(1800, 7, 1, 12), "1800-07-01 13:00 +0100 +01:00 CET"),    # Java: no local mean time
    ("+05:30", ms(2024, 7, 1, 12), "2024-07-01 17:30 +0530 +05:30 GMT+05:30"),
])
def test_zone_letters_in_a_time_zone(tz, instant, expected):
    assert fmt([instant], "yyyy-MM-dd HH:mm Z XXX z", tz) == [expected]


def test_dst_fall_back_in_berlin():
    assert fmt([ms(2024, 10, 27, 0, 59, 59) + 999, ms(2024, 10, 27, 1)], "HH:mm:ss.SSS z", "Europe/Berlin") == [
        "02:59:59.999 CEST", "02:00:00.000 CET"]


def test_timestamp_converter_formats_in_the_column_time_zone():
    value = pa.table({"ts": pa.array([ms(2024, 7, 1, 12)], pa.timestamp("ms", tz="Europe/Berlin"))})
    out = run([{"type": "TimestampConverter.Value", "field": "ts", "target_type": "string",
                "format": "yyyy-MM-dd HH:mm XXX"}], value)
    assert out.value.column("ts").to_pylist() == ["2024-07-01 14:00 +02:00"]


def test_julian_calendar_before_1582_10_15():
    year_1 = -62_135_596_800_000    # 0001-01-01 in the proleptic Gregorian calendar
    assert fmt([year_1], "G yyyy-MM-dd") == ["AD 0001-01-03"]
    assert fmt([ms(1582, 10, 15), ms(1582, 10, 15) - 1], "yyyy-MM-dd HH:mm:ss.SSS") == [
        "1582-10-15 00:00:00.000", "1582-10-04 23:59:59.999"]


def test_quoted_text():
    assert fmt([ms(2024, 1, 1, 12)], "hh 'o''clock' a") == ["12 o'clock PM"]
    assert fmt([0, None], "''") == ["'", None]
    assert compile_pattern("yyyy'T'é") == compile_pattern("yyyy'Té'")


def test_nulls_and_chunked_arrays():
    chunked = pa.chunked_array([pa.array([0, None], pa.timestamp("ms", tz="UTC")),
                                pa.array([-1], pa.timestamp("ms", tz="UTC"))])
    out = format_timestamps(chunked, "yyyy-MM-dd HH:mm:ss.SSS")
    assert isinstance(out, pa.ChunkedArray)
    assert out.to_pylist() == ["1970-01-01 00:00:00.000", None, "1969-12-31 23:59:59.999"]


@pytest.mark.parametrize(("pattern", "message"), [
    ("yyyyQQ", "pattern letter 'Q' is not supported"),
    ("XXXX", "XXXX is not valid"),
    ("zzzz", "long time zone names"),
    ("yyyy'T", "unterminated quote"),
])
def test_bad_patterns_are_refused(pattern, message):
    with pytest.raises(ValueError, match=message):
        compile_pattern(pattern)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("yyyy-MM-dd HH:mm:ss.SSS", "1969-12-31 23:59:58.500", -1500),
    ("yyyy-MM-dd HH:mm:ss.SSS", "1969-12-31 23:59:59.999", -1),
    ("yyyy-MM-dd", "2024-3-5", ms(2024, 3, 5)),                    # numbers need not be padded
    ("HH:mm:ss.S", "00:00:00.5", 5),                               # S is milliseconds
    ("yyyy-MM-dd", "2024-02-30", ms(2024, 3, 1)),                  # lenient, as Java
    ("yyyy-MM-dd", "1500-02-29", -14_825_894_400_000),             # a Julian leap day
    ("yyyy-MM-dd", "2024-01-05 and more", ms(2024, 1, 5)),         # text after the pattern is ignored
    ("yyyy-MM-dd'T'HH:mmZ", "2024-01-05T12:00+0530", ms(2024, 1, 5, 6, 30)),
    ("yyyy-MM-dd'T'HH:mmXXX", "2024-01-05T12:00Z", ms(2024, 1, 5, 12)),
    ("yy-MM-dd", "24-01-01", ms(2024, 1, 1)),
    ("d MMM yyyy hh:mm a", "5 JANUARY 2024 12:30 pm", ms(2024, 1, 5, 12, 30)),
])
def test_parse(pattern, text, expected):
    assert parse([text, None], pattern) == [expected, None]


def test_parse_refuses_week_fields_and_bad_text():
    with pytest.raises(ValueError, match="cannot be parsed"):
        parse(["2021-01-01"], "YYYY-MM-dd")
    with pytest.raises(ValueError, match="could not parse 'nope'"):
        parse(["2024-01-01", "nope"], "yyyy-MM-dd")
    with pytest.raises(TransformError, match="cannot be parsed"):
        run([{"type": "TimestampConverter.Value", "field": "s", "target_type": "unix", "format": "YYYY-ww"}],
            pa.table({"s": ["2021-01"]}))
