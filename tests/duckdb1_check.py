"""Open a parcours.duckdb with whatever DuckDB this interpreter has and count a view's rows.

Run under an old DuckDB (1.x) by `tests/test_warehouse.py` to prove BI tools that embed an older
DuckDB can read the views file written by DuckDB 2.0. Kept free of parcours imports and of
timestamp values (DuckDB 1.x's Python client needs pytz to return those), so a bare
`pip install duckdb==1.x` environment is enough.

usage: python tests/duckdb1_check.py DBFILE VIEW EXPECTED_COUNT
"""

import sys

import duckdb


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    db_file, view, expected = argv[0], argv[1], int(argv[2])
    print(f"duckdb {duckdb.__version__}")
    con = duckdb.connect(db_file, read_only=True)
    quoted = '"' + view.replace('"', '""') + '"'
    count = con.execute(f"select count(*) from {quoted}").fetchone()[0]
    if count != expected:
        print(f"{view}: {count} rows, expected {expected}", file=sys.stderr)
        return 1
    print(f"{view}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
