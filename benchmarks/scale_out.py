"""Six zoo recipes built one after another on the local executor vs on a 2-worker Dask cluster.

    python benchmarks/scale_out.py [--recipes R1.yaml ...] [--workers 2] [--pairs 1]

Each side is one `edgekit build R1 ... R6 --out DIR` process with an empty stage cache of its
own, so both train, convert and benchmark everything: `--executor local` (the default pool of
one worker process, which converts while the build process trains) and `--executor dask://local`
(a LocalCluster of --workers worker processes started by the build). With --pairs N the two
run N times in ABBA order, so that a drift in the machine's load falls on both.

Printed per run: the 1-minute load before it, its wall seconds, every recipe's build seconds
and status; then the wall-time ratio (local / dask) of each pair and their median, and whether
both sides gave the same rows, statuses and metrics (they must: latencies aside, the executor
changes where a task runs, not what it computes).

On a 2-core machine the cluster's gain is bounded: its two workers and the build's own training
share the same two cores, and every benchmark waits for the machine to be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["digits_cnn", "breast_cancer_mlp", "diabetes_mlp", "gunpoint_conv1d", "basic_motions_dscnn",
           "ecg_autoencoder_dense"]


def build(recipes: list[Path], executor: str, workers: int, scratch: Path) -> dict:
    """One `edgekit build` of every recipe; returns wall seconds and each recipe's results."""
    out, cache = scratch / "runs", scratch / "cache"
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "EDGEKIT_WORKERS": str(workers) if executor != "local" else "1"}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", *map(str, recipes), "--out", str(out),
                           "--executor", executor], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    results = {}
    if len(recipes) == 1:  # one recipe: --out is its run directory, and there is no summary
        path = out / "results.json"
        one = json.loads(path.read_text()) if path.exists() else None
        results[recipes[0].stem] = one
        summary = {"recipes": [{"name": recipes[0].stem, "status": "built" if one else "no results",
                                "build_seconds": (one or {}).get("build_seconds")}]}
    else:
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {"recipes": []}
    for recipe in summary["recipes"]:
        if "run_dir" in recipe:
            path = Path(recipe["run_dir"]) / "results.json"
            results[recipe["name"]] = json.loads(path.read_text()) if path.exists() else None
    return {"executor": executor, "load": load, "wall": wall, "exit": done.returncode, "summary": summary,
            "results": results, "tail": done.stderr[-2000:]}


def same_answers(a: dict, b: dict) -> list[str]:
    """What differs between two runs' rows, latencies aside (empty: the same answers)."""
    differences = [] if a["results"] else ["no results to compare"]
    for name, ra in a["results"].items():
        rb = b["results"].get(name)
        if ra is None or rb is None:
            differences.append(f"{name}: missing results")
            continue
        for x, y in zip(ra["rows"], rb["rows"]):
            if (x["id"], x["status"]) != (y["id"], y["status"]):
                differences.append(f"{name}: {x['id']} {x['status']} vs {y['id']} {y['status']}")
            elif any(abs(x["metrics"].get(k, 0) - v) > 1e-6 * max(1.0, abs(v)) for k, v in (y["metrics"] or {}).items()):
                differences.append(f"{name}: {x['id']} metrics {x['metrics']} vs {y['metrics']}")
        if len(ra["rows"]) != len(rb["rows"]):
            differences.append(f"{name}: {len(ra['rows'])} vs {len(rb['rows'])} rows")
    return differences


def show(run: dict) -> None:
    print(f"  {run['executor']:<12} load {run['load']:.2f}  wall {run['wall']:6.1f} s  exit {run['exit']}")
    for recipe in run["summary"]["recipes"]:
        print(f"      {recipe['name']:<24} {recipe['status']:<8} {recipe['build_seconds'] or 0:6.1f} s")
    if run["exit"] not in (0, 1):
        print(run["tail"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", type=Path, default=[ROOT / "recipes" / f"{n}.yaml" for n in RECIPES])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--pairs", type=int, default=1, help="ABBA pairs of (local, dask) runs (default 1)")
    args = parser.parse_args()
    print(f"{len(args.recipes)} recipes: {', '.join(p.stem for p in args.recipes)}; {os.cpu_count()} cores")
    ratios, first = [], {}
    for pair in range(args.pairs):
        order = ["local", "dask://local"] if pair % 2 == 0 else ["dask://local", "local"]
        runs = {}
        for executor in order:
            with tempfile.TemporaryDirectory(prefix="edgekit-scale-") as scratch:
                runs[executor] = build(args.recipes, executor, args.workers, Path(scratch))
            show(runs[executor])
        ratio = runs["local"]["wall"] / runs["dask://local"]["wall"]
        ratios.append(ratio)
        print(f"pair {pair + 1}: local / dask wall = {ratio:.2f}")
        first = first or runs
    print(f"wall-time ratio local / dask://local ({args.workers} workers): median {statistics.median(ratios):.2f} "
          f"over {len(ratios)} pair(s) {['%.2f' % r for r in ratios]}")
    differences = same_answers(first["local"], first["dask://local"])
    print("same rows, statuses and metrics on both: " + ("yes" if not differences else "NO"))
    for line in differences[:10]:
        print("  " + line)


if __name__ == "__main__":
    main()
