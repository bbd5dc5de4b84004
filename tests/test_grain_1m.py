"""The declared grain of every derived dataset, checked on the 1M benchmark warehouse (slow suite).

    .venv/bin/pytest -m slow tests/test_grain_1m.py
    PARCOURS_1M_WAREHOUSE=path/to/warehouse .venv/bin/pytest -m slow tests/test_grain_1m.py

Without the variable, it generates the 1M data of BENCHMARKS.md (`--customers 24000 --days 60
--seed 42`, 1,003,964 events) and backfills it first (about a minute and a half on 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import declarations
from parcours.synthetic import generate_dataset
from parcours.warehouse import Warehouse
from tests.harness import dataset_problems


@pytest.fixture(scope="module")
def warehouse_1m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("PARCOURS_1M_WAREHOUSE")
    if given:
        return Path(given)
    data = tmp_path_factory.mktemp("data-1m")
    generate_dataset(data, 24_000, 60, 42, config=load_config())
    root = tmp_path_factory.mktemp("warehouse-1m")
    warehouse = Warehouse(root)
    with warehouse.lock():
        Ingestion(warehouse, load_config()).run_files(data)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("derived", declarations(), ids=lambda d: d.name)
def test_the_1m_warehouse_meets_every_declared_grain(warehouse_1m: Path, derived) -> None:
    with duckdb.connect(str(warehouse_1m / "parcours.duckdb"), read_only=True) as con:
        rows = con.sql(f"select * from {derived.view}").to_arrow_table()
    assert rows.num_rows > 0
    problems = dataset_problems(rows, derived)
    assert problems == []
