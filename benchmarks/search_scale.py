"""One search of 12 trials (tiny models) on the local pool and on a Dask cluster of 1 and 2 workers.

    python benchmarks/search_scale.py [--sides local,dask1,dask2] [--recipe FILE]

Each side is one `edgekit search RECIPE --out DIR` process with an empty stage cache of its own,
so each trains, fine-tunes, converts and times every trial: `--executor local` (the trials one
after another in the search's process, conversions in its worker process) and `--executor
dask://local` with EDGEKIT_WORKERS=1 and =2 (each trial's training, fine-tuning and conversions
as one task on a worker; the timing of every trial in the search's process).

Printed per side: the 1-minute load before it, its wall seconds, the trials by status, the pick,
the Pareto front; the serial part (the seconds the search's process held this machine exclusively
to time rows, summed over the trials: no worker can share it) and the parallel part (the seconds
of the trials' preparation tasks: short fine-tunes, models, conversions; on the workers); then the Amdahl prediction for 2 workers from the
1-worker side, T(2) = timing + (T(1) - timing) / 2, against what 2 workers measured, and whether
every side gave the same statuses, metrics, sizes, pick and front (metrics and sizes must agree;
a pick or front decided by a p50 difference inside its interval may not: then the pick's margin
over its runner-up must read "significant: False" on every side).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: 3 pruning settings x 2 formats x 2 precisions = 12 trials of a 2.4k-parameter MLP on digits
RECIPE = """
name: scale
seed: 3
data:
  source: digits
model:
  arch: mlp
  params: {hidden: [32]}
train:
  epochs: 6
  batch_size: 32
  learning_rate: 0.01
quantize:
  calibration_samples: 64
benchmark:
  warmup: 5
  runs: 100
  inputs: 8
search:
  space:
    prune: [none, {sparsity: 0.5, epochs: 2}, {sparsity: 0.9, epochs: 2}]
    format: [tflite, onnx]
    precision: [fp32, int8]
  constraints: {max_metric_drop: 0.02}
  early_stop: {epochs: 1, slack: 0.02}
"""


def search(recipe: Path, executor: str, workers: int, scratch: Path) -> dict:
    out, cache = scratch / "search", scratch / "cache"
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "EDGEKIT_WORKERS": str(workers),
           "EDGEKIT_LOCK_DIR": str(scratch / "locks"), "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", "search", str(recipe), "--out", str(out),
                           "--executor", executor], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    path = out / "results.json"
    doc = json.loads(path.read_text()) if path.exists() else None
    timing = prepared = 0.0
    for trial in (doc or {}).get("search", {}).get("trials", []):
        run = out / trial["run_dir"] / "results.json"
        if run.exists():
            tasks = json.loads(run.read_text()).get("tasks", [])
            timing += sum(t["end"] - t["start"] for t in tasks if t["kind"] == "bench" and t["mode"] == "exclusive")
        prepared += trial.get("worker_seconds") or 0.0
    return {"executor": executor, "workers": workers, "load": load, "wall": wall, "exit": done.returncode, "doc": doc,
            "timing": timing, "prepared": prepared, "tail": done.stderr[-1500:]}


def answers(doc: dict | None) -> dict:
    """What every side must agree on: per trial its status, metric and size."""
    out = {}
    for trial in (doc or {}).get("search", {}).get("trials", []):
        row = trial["rows"].get(doc["search"]["target"]) or {}
        seen = row or trial.get("prepared") or trial.get("probe") or {}
        out[trial["id"]] = (trial["status"], round(seen.get("metric") or -1, 6), row.get("size_bytes"))
    return out


def differences(ours: dict, theirs: dict) -> list[str]:
    """Trials whose status or metric differ, or whose size differs by more than 1% (tf2onnx names
    nodes with a counter of its process, MatMul_Gemm__6 or __13, so an ONNX file's size depends on
    what its process converted before; its weights do not)."""
    out = []
    for trial in sorted(set(ours) | set(theirs)):
        a, b = ours.get(trial), theirs.get(trial)
        if a is None or b is None or a[:2] != b[:2] or (a[2] and b[2] and abs(a[2] - b[2]) > 0.01 * a[2]):
            out.append(f"{trial}: {a} vs {b}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="local,dask1,dask2", help="local, dask1, dask2 (comma-separated, in order)")
    parser.add_argument("--recipe", type=Path, default=None, help="a recipe with a search: section (default: 12 trials)")
    parser.add_argument("--keep", type=Path, default=None, help="keep every side's folder here (default: a temporary one)")
    args = parser.parse_args()
    results = []
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-search-scale-", dir=args.keep) as tmp:
        recipe = args.recipe or Path(tmp) / "scale.yaml"
        if args.recipe is None:
            recipe.write_text(RECIPE)
        for side in args.sides.split(","):
            executor, workers = ("local", 1) if side == "local" else ("dask://local", int(side[len("dask"):]))
            scratch = Path(tmp) / side
            scratch.mkdir()
            result = search(recipe, executor, workers, scratch)
            if args.keep is not None:
                import shutil

                shutil.copytree(scratch / "search", args.keep / side, dirs_exist_ok=True)
            results.append((side, result))
            doc = result["doc"] or {"search": {"counts": {}, "pick": None, "front": {}}}
            print(f"{side:6s} load {result['load']:.1f}  wall {result['wall']:6.1f} s  exit {result['exit']}  "
                  f"trials {doc['search']['counts']}  timing (serial) {result['timing']:.1f} s  "
                  f"preparations {result['prepared']:.1f} s", flush=True)
            pick = doc["search"]["pick"] or {}
            ci = pick.get("margin_ci95")
            print(f"       pick {pick.get('row')} (trial {pick.get('trial')}), runner-up {pick.get('runner_up_row')}, margin "
                  f"{pick.get('margin') or 0:.3f}" + (f" [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else "")
                  + f" significant: {pick.get('significant')}; front {doc['search']['front']}", flush=True)
            if result["exit"] not in (0, 1):
                print(result["tail"])
    walls = {side: r["wall"] for side, r in results}
    if "dask1" in walls and "dask2" in walls:
        serial = dict(results)["dask2"]["timing"]
        predicted = serial + (walls["dask1"] - serial) / 2
        print(f"Amdahl from the 1-worker side: T(2) = {serial:.1f} + ({walls['dask1']:.1f} - {serial:.1f}) / 2 = "
              f"{predicted:.1f} s predicted, {walls['dask2']:.1f} s measured ({walls['dask1'] / walls['dask2']:.2f}x "
              f"speedup measured, {walls['dask1'] / predicted:.2f}x predicted)")
    if "local" in walls:
        for side, wall in walls.items():
            if side != "local":
                print(f"local / {side}: {walls['local'] / wall:.2f}")
    base = answers(results[0][1]["doc"])
    for side, result in results[1:]:
        differ = differences(base, answers(result["doc"]))
        for line in differ:
            print(f"  differs: {line}")
        docs = (results[0][1]["doc"] or {}, result["doc"] or {})
        picks = [(d.get("search") or {}).get("pick") or {} for d in docs]
        fronts = [(d.get("search") or {}).get("front") for d in docs]
        print(f"{side} vs {results[0][0]}: same statuses, metrics and sizes (to 1%): {not differ}; same pick: "
              f"{picks[0].get('trial') == picks[1].get('trial')}; same front: {fronts[0] == fronts[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
