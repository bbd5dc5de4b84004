#!/usr/bin/env bash
# The main job end to end on local defaults (the README's first command):
#   install parcours into .venv -> start the local Kafka broker -> generate synthetic journeys
#   -> produce them to Kafka -> run the pipeline into ./warehouse -> print a few numbers
#   -> write the journey report and print where it is.
# Re-running it is safe: the same events are produced again and skipped as duplicates.
#
# Environment: CUSTOMERS (default 2000), DAYS (120: enough history for drop-off windows to close),
# SEED (7), REPORT_LANG (en or fr), KEEP_BROKER=1 to leave Kafka running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

customers="${CUSTOMERS:-2000}"
days="${DAYS:-120}"
seed="${SEED:-7}"

if [[ ! -x .venv/bin/python ]]; then
  command -v python3.11 >/dev/null || { echo "quickstart: python3.11 not found" >&2; exit 1; }
  python3.11 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'

bash infra/kafka.sh start
if [[ "${KEEP_BROKER:-0}" != 1 ]]; then
  trap 'bash infra/kafka.sh stop' EXIT
fi

.venv/bin/parcours generate --out data --customers "$customers" --days "$days" --seed "$seed" \
  --invalid-rate 0.002 --duplicate-rate 0.002 --late-rate 0.01
.venv/bin/parcours produce data
.venv/bin/parcours run --warehouse warehouse
.venv/bin/parcours sql --warehouse warehouse \
  "select (select count(*) from touchpoints) as touchpoints, (select count(*) from sessions) as sessions,
          (select count(*) from journeys) as journeys, (select count(*) from survey_answers) as survey_answers,
          (select count(*) from dead_letters) as dead_letters"
mkdir -p warehouse/reports
.venv/bin/parcours report --warehouse warehouse --out warehouse/reports/report.html --lang "${REPORT_LANG:-en}"
echo
echo "output: $(pwd)/warehouse  (open $(pwd)/warehouse/parcours.duckdb read-only in DuckDB or a BI tool)"
echo "report: $(pwd)/warehouse/reports/report.html  (one self-contained HTML file: open it in a browser)"
