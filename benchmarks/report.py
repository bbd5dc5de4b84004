"""How every benchmark script prints its results: one aligned line per measure, and JSON."""

from __future__ import annotations

import json
from pathlib import Path


def report(results: dict[str, object], json_path: Path | None) -> None:
    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:>12,}" if isinstance(value, int | float) else f"{key:<{width}}  {value}")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
