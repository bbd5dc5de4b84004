"""Output in delivery-time order without holding a big run in memory.

Lines are spilled to per-day bucket files keyed by delivery time and each day is sorted on its
own, so a million events never sit in memory as objects.
"""

from __future__ import annotations

from pathlib import Path

from parcours.synthetic.clock import DAY_MS


class TimeOrderedLines:
    """Lines keyed by delivery time, spilled to one bucket file per day, each sorted on its own.

    The key prefix is fixed-width (time, then arrival sequence), so a plain byte sort orders a
    day and ties keep generation order: the output does not depend on anything but the inputs.
    """

    _KEY_WIDTH = 22

    def __init__(self, spill_dir: Path, name: str, max_buffered: int) -> None:
        self.spill_dir, self.name, self.max_buffered = spill_dir, name, max_buffered
        self.buckets: dict[int, list[bytes]] = {}
        self.spilled: set[int] = set()
        self.buffered = 0
        self.seq = 0

    def add(self, key_ms: int, line: bytes) -> None:
        self.seq += 1
        self.buckets.setdefault(key_ms // DAY_MS, []).append(b"%012d%010d" % (key_ms, self.seq) + line)
        self.buffered += 1
        if self.buffered >= self.max_buffered:
            self._spill()

    def _bucket_path(self, day: int) -> Path:
        return self.spill_dir / f"{self.name}-{day:06d}.bucket"

    def _spill(self) -> None:
        for day in sorted(self.buckets):
            with self._bucket_path(day).open("ab") as bucket:
                bucket.write(b"\n".join(self.buckets[day]) + b"\n")
            self.spilled.add(day)
        self.buckets.clear()
        self.buffered = 0

    def write(self, path: Path) -> None:
        width = self._KEY_WIDTH
        with path.open("wb") as out:
            for day in sorted(self.spilled | set(self.buckets)):
                lines = self.buckets.pop(day, [])
                if day in self.spilled:
                    lines.extend(self._bucket_path(day).read_bytes().split(b"\n")[:-1])
                lines.sort()
                out.write(b"".join([line[width:] + b"\n" for line in lines]))
