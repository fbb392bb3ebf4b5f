"""The benchmark report: each committed result renders to its committed Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import goals, peer, report

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"
RUNS = sorted(RESULTS.glob("*.json"))


def test_there_are_committed_results() -> None:
    assert RUNS


@pytest.mark.parametrize("run", RUNS, ids=[p.stem for p in RUNS])
def test_markdown_is_the_committed_one(run: Path) -> None:
    data = json.loads(run.read_text())
    rendered = report.markdown(data, [f"{run.stem}.png"])
    assert rendered == run.with_suffix(".md").read_text()


@pytest.mark.parametrize("run", RUNS, ids=[p.stem for p in RUNS])
def test_goals_are_the_committed_ones(run: Path) -> None:
    data = json.loads(run.read_text())
    assert json.loads(json.dumps(goals.goals(data))) == data["goals"]


@pytest.mark.parametrize("run", RUNS, ids=[p.stem for p in RUNS])
def test_ratios_to_the_reference_are_the_committed_ones(run: Path) -> None:
    data = json.loads(run.read_text())
    assert json.loads(json.dumps(peer.ratios(data))) == data.get("ratios", [])
