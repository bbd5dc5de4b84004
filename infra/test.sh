#!/usr/bin/env bash
# The tests, from nothing (the README's test command, and what CI runs): install parcours into
# .venv from constraints.txt, a DuckDB 1.x client beside it, fetch the Kafka jars, start the real
# local broker, run pytest (arguments are passed on), and stop the broker on every exit path.
#   bash infra/test.sh                 # the CI sample: everything but @pytest.mark.slow
#   bash infra/test.sh -k sessionize   # a subset
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
  command -v python3.11 >/dev/null || { echo "test.sh: python3.11 not found" >&2; exit 1; }
  python3.11 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'

# A DuckDB 1.x client beside it: the views file must stay readable by BI tools that embed 1.x.
if [[ ! -x .venv-duckdb1/bin/python ]]; then
  python3.11 -m venv .venv-duckdb1
fi
.venv-duckdb1/bin/python -m pip install -q --disable-pip-version-check duckdb==1.1.3
export PARCOURS_DUCKDB1_PYTHON="$PWD/.venv-duckdb1/bin/python"

# The report's test opens it in a real headless Chromium: Debian's, with its driver (no browser
# download; selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
fi

bash infra/kafka.sh fetch
trap 'bash infra/kafka.sh stop' EXIT
bash infra/kafka.sh start
bash infra/kafka.sh topics  # finds .venv/bin/python itself
# The tests use this broker instead of starting their own (tests/conftest.py).
export PARCOURS_KAFKA_BOOTSTRAP="127.0.0.1:${PARCOURS_KAFKA_PORT:-19092}"

# pytest's exit status is the script's: 5 (no test collected) fails CI like a failed test.
.venv/bin/pytest -m "not slow" "$@"
