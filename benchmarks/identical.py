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
difference printed. `--by-column` also counts, for the keyed views, the rows each shared column
changes (a change that redefines columns lists them with their counts). Exit status 1 when any
view differs. This checks equality, not speed.
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
# The key of each view that has one: `--by-column` matches rows on it and counts, per column the
# two sides share, the rows whose value differs (what a change that redefines columns changed).
KEYS = {
    "touchpoints": ("event_id",),
    "survey_answers": ("response_id",),
    "sessions": ("session_id",),
    "journeys": ("customer_id", "journey_cycle"),
}


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


def changed_by_column(a: Path, b: Path, views: tuple[str, ...], tolerance: float = 1e-9) -> dict[str, dict[str, int]]:
    """view -> column -> rows (matched on the view's key) whose value differs, for the keyed views;
    `(rows only in A)` and `(rows only in B)` count the keys one side lacks."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{a / 'parcours.duckdb'}' as a (read_only)")
        con.execute(f"attach '{b / 'parcours.duckdb'}' as b (read_only)")
        out: dict[str, dict[str, int]] = {}
        for view in (v for v in views if v in KEYS):
            key = KEYS[view]
            columns_b = {row[0] for row in con.execute(f"describe b.{view}").fetchall()}
            shared = [
                row[0]
                for row in con.execute(f"describe a.{view}").fetchall()
                if row[0] in columns_b and row[0] not in (*VOLATILE, *key)
            ]
            on = " and ".join(f'x."{c}" = y."{c}"' for c in key)
            types = dict(con.execute(f"select column_name, column_type from (describe a.{view})").fetchall())

            def differs(c: str, types: dict = types) -> str:
                if types[c] in ("DOUBLE", "FLOAT"):  # within the tolerance, as `compare`
                    return (
                        f'(x."{c}" is null) <> (y."{c}" is null) or abs(x."{c}" - y."{c}") '
                        f'/ greatest(abs(x."{c}"), 1e-300) > {tolerance}'
                    )
                return f'x."{c}" is distinct from y."{c}"'

            counts = ", ".join(f"count(*) filter (where {differs(c)})" for c in shared)
            values = con.execute(f"select {counts} from a.{view} x join b.{view} y on {on}").fetchone()
            changed = {c: n for c, n in zip(shared, values, strict=True) if n}
            keys = ", ".join(f'"{c}"' for c in key)
            for side, other, label in (("a", "b", "(rows only in A)"), ("b", "a", "(rows only in B)")):
                only = f"select {keys} from {side}.{view} except all select {keys} from {other}.{view}"
                (n,) = con.execute(f"select count(*) from ({only})").fetchone()
                if n:
                    changed[label] = n
            out[view] = changed
        return out
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--view", action="append", help="compare only these views (repeatable)")
    parser.add_argument("--tolerance", type=float, default=1e-9, help="relative, for floating point columns")
    parser.add_argument(
        "--by-column", action="store_true", help="also count, per shared column of the keyed views, the rows it changes"
    )
    args = parser.parse_args()
    result = compare(args.a, args.b, tuple(args.view) if args.view else VIEWS, args.tolerance)
    print(f"{'view':<24}{'rows A':>12}{'rows B':>12}{'only A':>10}{'only B':>10}")
    for view, (n_a, n_b, only_a, only_b) in result.items():
        print(f"{view:<24}{n_a:>12,}{n_b:>12,}{only_a:>10,}{only_b:>10,}")
    if args.by_column:
        for view, changed in changed_by_column(args.a, args.b, tuple(result), args.tolerance).items():
            described = ", ".join(f"{column} {n:,}" for column, n in changed.items()) or "no shared column changed"
            print(f"{view}: {described}")
    same = all(only_a == only_b == 0 and n_a == n_b for n_a, n_b, only_a, only_b in result.values())
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
