"""The history window check against one stored baseline, on real builds with one injected regression.

    python benchmarks/history_window.py [--builds 21] [--window 10] [--out DIR]

Two tiny recipes (digits MLPs, TFLite fp32 and int8 on this machine's CPU) are built once, then
re-timed ``--builds - 1`` times (`edgekit build --retime --history DB`: every build a real new
measurement, recorded in one SQLite history). In the last build, recipe B's model is made much
wider (the same row ids, a slower variant): the injected regression. After every build each
recipe's run is checked two ways, both with the same 10% latency limit:

- window: `edgekit check RUN --history DB --window N` (``max_latency_regression_vs_history``:
  the p50 against the geometric mean of the row's last N runs, failed only when its 95% interval
  lies above 1);
- one stored baseline: `edgekit check RUN --baseline FIRST` with the baseline saved from the first
  build (``max_latency_abs_regression: 1.10``, the p50 against the one stored p50; and the default
  in-run ratio budget ``max_latency_ratio_regression``).

Printed: per build and recipe, the 1-minute load and which rows each way failed; then, per way,
the false alarms (failures in builds without a regression) and whether the regression was caught.
The machine is shared: the load column says how busy it was while timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's edgekit, also for the checks run in this process
RECIPE = """name: {name}
seed: 3
data: {{source: digits}}
model: {{arch: mlp, params: {{hidden: {hidden}}}}}
train: {{epochs: 3, batch_size: 64}}
quantize: {{calibration_samples: 64}}
export: {{formats: [tflite]}}
benchmark: {{warmup: 20, runs: 400, inputs: 8, rounds: 5, profile: false}}
check:
  defaults: {{max_latency_abs_regression: 1.10, max_latency_regression_vs_history: 1.10}}
"""


def edgekit(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=False)


def failed_rows(run: Path, env: dict, *how: str) -> dict[str, list[str]]:
    """{budget: [row ids]} of the latency budgets `edgekit check RUN *how` failed."""
    from edgekit import api

    os.environ.update(env)
    report = api.check(run, *([Path(how[1])] if how[0] == "--baseline" else []),
                       history=how[1] if how[0] == "--history" else None, window=int(how[2]) if len(how) > 2 else 10)
    out: dict[str, list[str]] = {}
    for outcome in report.failures:
        if "latency" in outcome.budget:
            out.setdefault(outcome.budget, []).append(outcome.row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=21)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    scratch = args.out or Path(tempfile.mkdtemp(prefix="edgekit-history-"))
    scratch.mkdir(parents=True, exist_ok=True)
    db = scratch / "history.db"
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(scratch / "cache"), "EDGEKIT_LOCK_DIR": str(scratch / "locks"),
           "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    recipes = {"hist_a": [96], "hist_b": [32]}
    log = []
    for build in range(1, args.builds + 1):
        regression = build == args.builds
        for name, hidden in recipes.items():
            slower = regression and name == "hist_b"
            path = scratch / f"{name}.yaml"
            path.write_text(RECIPE.format(name=name, hidden=[1024, 1024] if slower else hidden))
            run = scratch / "runs" / name
            load = os.getloadavg()[0]
            done = edgekit("build", str(path), "--out", str(run), "--history", str(db),
                           *([] if build == 1 else ["--retime"]), "--no-tensorboard", env=env)
            if done.returncode not in (0, 1):
                sys.exit(f"build {build} of {name} failed: {done.stderr[-2000:]}")
            if build == 1:
                edgekit("baseline", "save", str(run), str(scratch / f"{name}.baseline.json"), env=env)
                continue
            window = failed_rows(run, env, "--history", str(db), str(args.window))
            single = failed_rows(run, env, "--baseline", str(scratch / f"{name}.baseline.json"))
            entry = {"build": build, "recipe": name, "load": round(load, 1), "regression": slower,
                     "window": window, "single": single}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    (scratch / "log.json").write_text(json.dumps(log, indent=1))
    print(f"\nhistory: {db}; {len(log)} checks; window of {args.window}; first window check with 3+ runs: build 5")
    for way, budgets in (("window", None), ("single", "p50 latency regression vs stored (absolute)"),
                         ("single", "latency ratio regression vs stored")):
        label = way if budgets is None else f"single baseline, {budgets}"
        def fails(e, way=way, budgets=budgets):
            return [row for b, rows in e[way].items() if budgets is None or b == budgets for row in rows]
        false = [(e["build"], e["recipe"], fails(e)) for e in log if not e["regression"] and fails(e)]
        caught = [(e["recipe"], fails(e)) for e in log if e["regression"]]
        judged = sum(1 for e in log if not e["regression"])
        print(f"{label}: false alarms in {len(false)} of {judged} checks without a regression "
              f"({sum(len(f[2]) for f in false)} row verdicts){': ' + str(false) if false else ''}; "
              f"the regression: {caught}")


if __name__ == "__main__":
    main()
