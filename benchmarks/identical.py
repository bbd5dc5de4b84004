"""Are two warehouses the same, row for row? For a change that must not change what is landed.

    .venv/bin/python benchmarks/identical.py WAREHOUSE_A WAREHOUSE_B [--view NAME ...]

Typically the same data backfilled by two checkouts (`parcours run --from DIR -w A` with the code
before a change, `-w B` with the code after). For each view (by default the landed and derived
datasets users query: touchpoints, survey answers, sessions, journeys and the rollups), it
compares the two warehouses' rows as multisets (`except all`, both ways), leaving out the columns
that say when and by which commit a row was written rather than what it is (`ingested_at`,
`batch_seq`), and prints per view the rows on each side and the rows only one side has. Floating
point columns (sums of revenue) are compared apart: DuckDB adds in parallel, so the same sum can
differ in its last bits from run to run; the rows are matched on every other column and such a
column counts as equal within a relative `--tolerance` (default 1e-9), its largest relative
difference printed. Exit status 1 when any view differs. This checks equality, not speed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

VIEWS = (
    "touchpoints",
    "survey_answers",
    "sessions",
    "journeys",
    "sessions_daily",
    "touchpoints_daily",
    "journey_stages_weekly",
    "journey_paths_weekly",
)
VOLATILE = ("ingested_at", "batch_seq")


def compare(
    a: Path, b: Path, views: tuple[str, ...] = VIEWS, tolerance: float = 1e-9
) -> dict[str, tuple[int, int, int, int]]:
    """view -> (rows in a, rows in b, rows only in a, rows only in b), as multisets."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{a / 'parcours.duckdb'}' as a (read_only)")
        con.execute(f"attach '{b / 'parcours.duckdb'}' as b (read_only)")
        out = {}
        for view in views:
            columns_a = [row[0] for row in con.execute(f"describe a.{view}").fetchall()]
            columns_b = {row[0] for row in con.execute(f"describe b.{view}").fetchall()}
            types = dict(con.execute(f"select column_name, column_type from (describe a.{view})").fetchall())
            kept = [c for c in columns_a if c in columns_b and c not in VOLATILE]
            floats = [c for c in kept if types[c] in ("DOUBLE", "FLOAT")]
            exact = [c for c in kept if c not in floats]
            dropped = sorted((set(columns_a) ^ columns_b) - set(VOLATILE))
            if dropped:
                print(f"{view}: columns on one side only, not compared: {dropped}", file=sys.stderr)
            select = ", ".join(f'"{c}"' for c in exact)
            (n_a,) = con.execute(f"select count(*) from a.{view}").fetchone()
            (n_b,) = con.execute(f"select count(*) from b.{view}").fetchone()
            (only_a,) = con.execute(
                f"select count(*) from (select {select} from a.{view} except all select {select} from b.{view})"
            ).fetchone()
            (only_b,) = con.execute(
                f"select count(*) from (select {select} from b.{view} except all select {select} from a.{view})"
            ).fetchone()
            if floats and only_a == only_b == 0:
                on = " and ".join(f'x."{c}" is not distinct from y."{c}"' for c in exact)
                for column in floats:
                    (worst,) = con.execute(
                        f'select coalesce(max(abs(x."{column}" - y."{column}") '
                        f'/ greatest(abs(x."{column}"), 1e-300)), 0) '
                        f"from a.{view} x join b.{view} y on {on}"
                    ).fetchone()
                    (unmatched,) = con.execute(
                        f"select count(*) from a.{view} x join b.{view} y on {on} "
                        f'where (x."{column}" is null) <> (y."{column}" is null)'
                    ).fetchone()
                    print(f"{view}.{column}: largest relative difference {worst:.1e}", file=sys.stderr)
                    if worst > tolerance or unmatched:
                        only_a, only_b = only_a or 1, only_b or 1
            out[view] = (n_a, n_b, only_a, only_b)
        return out
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--view", action="append", help="compare only these views (repeatable)")
    parser.add_argument("--tolerance", type=float, default=1e-9, help="relative, for floating point columns")
    args = parser.parse_args()
    result = compare(args.a, args.b, tuple(args.view) if args.view else VIEWS, args.tolerance)
    print(f"{'view':<24}{'rows A':>12}{'rows B':>12}{'only A':>10}{'only B':>10}")
    for view, (n_a, n_b, only_a, only_b) in result.items():
        print(f"{view:<24}{n_a:>12,}{n_b:>12,}{only_a:>10,}{only_b:>10,}")
    same = all(only_a == only_b == 0 and n_a == n_b for n_a, n_b, only_a, only_b in result.values())
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
