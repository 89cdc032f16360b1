"""The results history: recording builds in a real database (a SQLite file through the standard
library, the same through SQLAlchemy, and a real PostgreSQL where .ci/run started one:
EDGEKIT_TEST_POSTGRES_URL), idempotent and safe under concurrent writers; `edgekit history`;
and `edgekit check --history --window N`.

The runs are the shared tiny build's results.json, re-timed: each later run is the same file with
its latencies scaled (a slower or faster machine state) and a later measured_at, as a
`edgekit build --retime` writes it.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit import api, history
from edgekit.cli import cli
from edgekit.errors import InputError
from edgekit.history import store as stores

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("EDGEKIT_TEST_POSTGRES_URL")


def retimed(results: dict, factor: float, at: float, rows: str = "") -> dict:
    """``results`` as a later --retime of the same build on a quiet machine: every row's
    latencies times ``factor`` (only rows whose id starts with ``rows``), its rounds ending at
    ``at`` and agreeing within 1% (the shared build may have been timed on a busy machine)."""
    out = copy.deepcopy(results)
    out["finished_at"] = at + 1
    for row in out["rows"]:
        if row.get("latency_ms"):
            row["measured_at"] = at
            p50 = row["latency_ms"]["p50"]
            row["timing"].update(round_p50_ms=[p50 * (1 + d) for d in (-0.01, 0.0, 0.01, 0.005, -0.005)],
                                 p50_ci95_ms=[p50 * 0.99, p50 * 1.01], unstable=False)
            if not row["id"].startswith(rows):
                continue
            row["latency_ms"] = {k: v * factor if k != "runs" else v for k, v in row["latency_ms"].items()}
            timing = row["timing"]
            timing["round_p50_ms"] = [p * factor for p in timing["round_p50_ms"]]
            if timing.get("p50_ci95_ms"):
                timing["p50_ci95_ms"] = [p * factor for p in timing["p50_ci95_ms"]]
    return out


@pytest.fixture(params=["sqlite", "sqlalchemy-sqlite", "postgresql"])
def url(request, tmp_path):
    """One empty store per back end."""
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    pytest.importorskip("sqlalchemy")
    if request.param == "sqlalchemy-sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'history.db'}"
    if not POSTGRES:
        pytest.skip("no PostgreSQL: set EDGEKIT_TEST_POSTGRES_URL (.ci/run starts one from Debian's postgresql)")
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES)
    with engine.begin() as db:
        db.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {stores.TABLE}"))
    engine.dispose()
    return POSTGRES


def test_recording_is_keyed_idempotent_and_a_cached_rebuild_adds_nothing(tiny_run, url):
    results = tiny_run.results
    rows = len(results["rows"])
    assert history.record(results, url, tiny_run.dir)[1:] == (rows, rows)
    assert history.record(results, url, tiny_run.dir)[1:] == (0, rows)  # recorded again: nothing new
    cached = copy.deepcopy(results)
    cached["finished_at"] += 100  # a later build whose rows all came from the bench cache
    assert history.record(cached, url)[1] == 0
    again = retimed(results, 1.0, results["finished_at"] + 50)  # --retime: new measurements
    assert history.record(again, url)[1] == sum(1 for r in results["rows"] if r.get("latency_ms"))
    store = stores.open_store(url)
    series = store.series(recipe="tiny", row_id="tflite-int8@cpu", target="cpu")
    assert len(series) == 2 and series[0]["measured_at"] < series[1]["measured_at"]
    first = series[0]
    row = next(r for r in results["rows"] if r["id"] == "tflite-int8@cpu")
    assert first["p50_ms"] == pytest.approx(row["latency_ms"]["p50"]) and first["size_bytes"] == row["size_bytes"]
    assert first["metric"] == "accuracy" and first["metric_value"] == pytest.approx(row["metrics"]["accuracy"])
    assert first["recipe_sha256"] == results["recipe"]["sha256"] and len(first["environment"]) == 16
    assert json.loads(first["round_p50_ms"]) == pytest.approx(row["timing"]["round_p50_ms"])


WRITER = textwrap.dedent("""
    import json, sys
    from edgekit.history import store
    results, url, worker = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
    opened = store.open_store(url)
    for k in range(5):  # five re-timed builds: every timed row measured anew
        for row in results["rows"]:
            row["measured_at"] = 1e9 + worker * 100 + k
        opened.record(results)
""")


def test_concurrent_builds_writing_at_once_lose_nothing(tiny_run, url, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(tiny_run.results))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "results.json"), url, str(w)], env=env,
                                cwd=ROOT, stderr=subprocess.PIPE) for w in range(3)]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read().decode()[-2000:]
    assert len(stores.open_store(url).series(recipe="tiny")) == 3 * 5 * len(tiny_run.results["rows"])


def window_runs(tiny_run, url, count: int = 12, noise: float = 0.03, seed: int = 0) -> float:
    """``count`` earlier runs of the tiny build in the store, latencies within +-``noise``;
    returns the time of the last one."""
    rng = random.Random(seed)
    start = tiny_run.results["finished_at"] - 10_000
    for k in range(count):
        history.record(retimed(tiny_run.results, 1 + rng.uniform(-noise, noise), start + 100 * k), url)
    return start + 100 * count


def checked_run(tiny_run, tmp_path, results: dict) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run)
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_the_window_check_catches_a_slower_row_without_a_false_alarm_on_the_others(tiny_run, tmp_path):
    url = str(tmp_path / "history.db")
    now = window_runs(tiny_run, url)
    slower = retimed(tiny_run.results, 1.4, now, rows="tflite-int8")
    result = CliRunner().invoke(cli, ["check", str(checked_run(tiny_run, tmp_path, slower)), "--history", url,
                                      "--window", "10"])
    assert result.exit_code == 1, result.output
    failing = [line for line in result.output.splitlines() if " FAIL " in line]
    assert failing and all(line.startswith("tflite-int8@cpu") and "latency vs history (last 10)" in line
                           for line in failing), result.output
    lines = [line for line in result.output.splitlines() if "latency vs history" in line and not line.startswith("Error")]
    assert len(lines) == sum(1 for r in slower["rows"] if r.get("latency_ms"))
    assert "geometric mean of 10 run(s)" in result.output and "growth 95% interval [" in result.output
    steady = retimed(tiny_run.results, 1.02, now)
    report = api.check(checked_run(tiny_run, tmp_path / "b", steady), history=url, window=10)
    judged = [o for o in report.outcomes if o.budget.startswith("latency vs history")]
    assert report.passed and judged and all(o.result == "pass" for o in judged), [o.describe() for o in report.failures]


def test_a_short_window_judges_nothing_and_says_why(tiny_run, tmp_path):
    url = str(tmp_path / "history.db")
    now = window_runs(tiny_run, url, count=2)
    report = api.check(checked_run(tiny_run, tmp_path, retimed(tiny_run.results, 3.0, now)),
                                             history=url, window=10)
    judged = [o for o in report.outcomes if o.budget.startswith("latency vs history")]
    assert judged and all(o.result == "skip" and "2 earlier run(s)" in o.detail for o in judged)


def test_history_prints_a_recipes_trend_and_a_rows_runs_and_writes_a_plot(tiny_run, tmp_path):
    url = str(tmp_path / "history.db")
    now = window_runs(tiny_run, url, count=4)
    history.record(retimed(tiny_run.results, 1.5, now, rows="tflite-int8"), url)
    result = CliRunner().invoke(cli, ["history", "tiny", "--history", url, "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("tflite-int8@cpu "))
    assert line.split()[1] == "5" and ("+4" in line or "+5" in line), line  # 5 runs; the last about +50%
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = CliRunner().invoke(cli, ["history", "tflite-int8@cpu", "--history", url, "--plot", str(tmp_path / "r.png")])
    assert one.exit_code == 0 and one.output.count("accuracy 0.") == 5, one.output
    missing = CliRunner().invoke(cli, ["history", "nope", "--history", url])
    assert missing.exit_code == 2 and "no recipe or row called 'nope' (recipes there: tiny)" in missing.output


def test_ci_records_by_default_and_a_database_url_without_sqlalchemy_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    assert history.wanted(None) is None and history.wanted("x.db") == "x.db"
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv(stores.ENV, str(tmp_path / "ci.db"))
    assert history.wanted(None) == str(tmp_path / "ci.db")
    code = ("import sys\nsys.modules['sqlalchemy'] = None\nfrom edgekit.history import store\n"
            "try:\n    store.open_store('postgresql+psycopg://ci:secret@db/edgekit')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.startswith("InputError history postgresql+psycopg://ci@db/edgekit: a database URL needs SQLAlchemy: "
                          "pip install 'keras-edgekit[history]'") and "secret" not in out
    (tmp_path / "not-a-db").mkdir()
    with pytest.raises(InputError, match="cannot open it as a SQLite database"):
        stores.open_store(str(tmp_path / "not-a-db"))
