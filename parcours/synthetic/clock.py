"""Simulation time: integer milliseconds since `start` 00:00 UTC, formatted as producers stamp it."""

from __future__ import annotations

import bisect
import functools
from datetime import date, timedelta

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class Clock:
    """Formats simulation time as RFC 3339 with the offset a given producer would use."""

    FIRST_DAY = -2  # local times can fall on the day before the start

    def __init__(self, start: date, days: int) -> None:
        self.dates = [(start + timedelta(days=day)).isoformat() + "T" for day in range(self.FIRST_DAY, days + 8)]
        self.hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        # EU summer time: from the last Sunday of March to the last Sunday of October, 01:00 UTC.
        self.paris_switches: list[int] = []
        for year in range(start.year, (start + timedelta(days=days + 8)).year + 1):
            for month in (3, 10):
                last = date(year, month, 31)
                last -= timedelta(days=(last.weekday() + 1) % 7)
                self.paris_switches.append((last - start).days * DAY_MS + HOUR_MS)

    def paris_offset(self, t: int) -> int:
        return 2 * HOUR_MS if bisect.bisect_right(self.paris_switches, t) % 2 else HOUR_MS

    def stamp(self, t: int, offset_ms: int, suffix: str, millis: bool) -> str:
        day, rest = divmod(t + offset_ms, DAY_MS)
        seconds, ms = divmod(rest, SECOND_MS)
        text = self.dates[day - self.FIRST_DAY] + self.hms[seconds]
        if millis:
            text += f".{ms:03d}"
        return text + suffix

    def date_of(self, t: int) -> str:
        return self.dates[t // DAY_MS - self.FIRST_DAY][:-1]


@functools.cache
def offset_suffix(offset_ms: int) -> str:
    sign = "+" if offset_ms >= 0 else "-"
    minutes = abs(offset_ms) // MINUTE_MS
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
