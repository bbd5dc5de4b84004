"""benchmarks/verbatims.py still runs, on a tiny generated dataset, and finds every planted PII string."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parcours.config import load_config
from parcours.synthetic import generate_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow  # loads py3langid's and simplemma's tables in a subprocess: ~10 s
def test_verbatims_benchmark_runs_and_redacts_what_it_planted(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", 60, 15, 3, config=load_config())
    out = tmp_path / "verbatims.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "verbatims.py"),
            "--data",
            str(tmp_path / "data"),
            "--answers",
            "400",
            "--pii-share",
            "0.25",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BENCHMARKS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["verbatims processed"] == 400
    assert results["redactions found (email, iban, card, phone)"] == results["planted (email, iban, card, phone)"]
    assert results["(day, term, language) rows"] > 0
