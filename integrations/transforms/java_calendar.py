"""Java's ``GregorianCalendar`` arithmetic on numpy int64 day numbers (days since 1970-01-01).

Julian before 1582-10-15, Gregorian from then on, and the en_US week (starting on Sunday, week 1
holds January 1). ``CalendarFields`` gives every calendar field of an array of instants in a zone.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from integrations.transforms.java_zones import JavaZone

IntArray = np.ndarray | int   # day numbers, years, months: an array, or one value broadcast

DAY_MS = 86_400_000
CUTOVER_DAY = -141_427              # 1582-10-15, the first Gregorian day, in days since 1970-01-01
_FIRST_DAY_OF_WEEK = 0               # Sunday (days are numbered Sunday = 0 … Saturday = 6)
_MIN_DAYS_IN_FIRST_WEEK = 1          # en_US: week 1 is the week that holds January 1


def gregorian_days(y: IntArray, m: IntArray, d: IntArray) -> IntArray:
    """Days since 1970-01-01 of proleptic Gregorian dates (m 1–12, d may overflow)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def julian_days(y: IntArray, m: IntArray, d: IntArray) -> IntArray:
    """Days since 1970-01-01 of Julian calendar dates (m 1–12, d may overflow)."""
    y = y - (m <= 2)
    era = y // 4
    yoe = y - era * 4
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 1461 + yoe * 365 + doy - 719_470


def _civil(doe, yoe, era_years):
    """Year, month, day from the day and year of a March-based era (shared by both calendars)."""
    doy = doe - yoe
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return era_years + (m <= 2), m, d


def gregorian_date(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of each day number (year 0 is 1 BC)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y, m, d = _civil(doe, 365 * yoe + yoe // 4 - yoe // 100, yoe + era * 400)
    return y, m, d


def _julian_date(days):
    z = days + 719_470
    era = z // 1461
    doe = z - era * 1461
    yoe = (doe - doe // 1460) // 365
    return _civil(doe, 365 * yoe, yoe + era * 4)


def _hybrid_date(days):
    """Java's GregorianCalendar date (proleptic year: 0 is 1 BC) of each day number."""
    greg = days >= CUTOVER_DAY
    if greg.all():
        return gregorian_date(days)
    gy, gm, gd = gregorian_date(days)
    jy, jm, jd = _julian_date(days)
    return np.where(greg, gy, jy), np.where(greg, gm, jm), np.where(greg, gd, jd)


def _first_of_month(y, m):
    """Day number of the 1st of (y, m) in the calendar Java counts that month in (Julian up to Oct 1582)."""
    julian = (y < 1582) | ((y == 1582) & (m <= 10))
    return np.where(julian, julian_days(y, m, 1), gregorian_days(y, m, 1))


def day_of_week(days: IntArray) -> IntArray:
    """Sunday = 0 … Saturday = 6 (1970-01-01 was a Thursday)."""
    return (days + 4) % 7


def week_number(day1: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Java's GregorianCalendar.getWeekNumber: the week of ``days`` in the period starting on ``day1``."""
    first = day1 + 6 - (day_of_week(day1 + 6) - _FIRST_DAY_OF_WEEK) % 7
    first = np.where(first - day1 >= _MIN_DAYS_IN_FIRST_WEEK, first - 7, first)
    return (days - first) // 7 + 1


class CalendarFields:
    """Java's calendar fields of each instant, computed on first use."""

    def __init__(self, utc_ms: np.ndarray, zone: JavaZone) -> None:
        self.utc_ms, self.zone = utc_ms, zone

    @cached_property
    def zone_fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The zone's (offset ms, is-DST, name index) of each instant."""
        return self.zone.offsets(self.utc_ms)

    @cached_property
    def offset_ms(self) -> np.ndarray:
        """Offset from UTC in milliseconds."""
        return self.zone_fields[0]

    @cached_property
    def local_ms(self) -> np.ndarray:
        """Local wall-clock time as epoch milliseconds."""
        return self.utc_ms + self.offset_ms

    @cached_property
    def days(self) -> np.ndarray:
        """Local day number (days since 1970-01-01)."""
        return self.local_ms // DAY_MS

    @cached_property
    def ms_of_day(self) -> np.ndarray:
        """Milliseconds since local midnight."""
        return self.local_ms - self.days * DAY_MS

    @cached_property
    def date(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Java's (year, month, day) of the local day."""
        return _hybrid_date(self.days)

    @property
    def year(self) -> np.ndarray:
        """Proleptic year: 0 is 1 BC."""
        return self.date[0]

    @property
    def month(self) -> np.ndarray:
        """Month, 1–12."""
        return self.date[1]

    @property
    def day(self) -> np.ndarray:
        """Day of the month."""
        return self.date[2]

    @cached_property
    def weekday(self) -> np.ndarray:
        """Sunday = 0 … Saturday = 6."""
        return day_of_week(self.days)

    @cached_property
    def jan1(self) -> np.ndarray:
        """Day number of January 1 of the year."""
        return _first_of_month(self.year, 1)

    @cached_property
    def month1(self) -> np.ndarray:
        """Day number of the 1st of the month."""
        return _first_of_month(self.year, self.month)

    @cached_property
    def week_of_year(self) -> np.ndarray:
        """Java's WEEK_OF_YEAR (en_US weeks)."""
        week = week_number(self.jan1, self.days)
        prev = week_number(_first_of_month(self.year - 1, 1), self.days)
        next_jan1 = _first_of_month(self.year + 1, 1)
        next_first = next_jan1 + 6 - (day_of_week(next_jan1 + 6) - _FIRST_DAY_OF_WEEK) % 7
        # Java checks weeks 52+ only, except in 1581 and 1582 (the short year 1582 has 51 weeks)
        may_be_next = (week >= 52) | (self.year == 1581) | (self.year == 1582)
        in_next = may_be_next & (next_first - next_jan1 >= _MIN_DAYS_IN_FIRST_WEEK) & (self.days >= next_first - 7)
        return np.where(week == 0, prev, np.where(in_next, 1, week))

    @cached_property
    def week_year(self) -> np.ndarray:
        """The year the week of ``week_of_year`` belongs to."""
        w = self.week_of_year
        return self.year + ((self.month != 1) & (w == 1)) - ((self.month == 1) & (w >= 52))

    @cached_property
    def hour(self) -> np.ndarray:
        """Hour of the day, 0–23."""
        return self.ms_of_day // 3_600_000
