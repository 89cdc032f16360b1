#!/usr/bin/env python3
"""How stable are edgekit's timings and its gate on a shared machine? (issue 14, item 3)

For each recipe: build it once, then time the same artifacts again N times (``edgekit build
--retime``: every other stage comes from the cache), first on the machine as it is, then with a
CPU-burning process beside it. Each set of reruns is checked against a baseline saved from
another rerun of the same set (``edgekit baseline save`` + ``edgekit check``), as CI would.

Printed per recipe and condition:
- false failures: checks that exited 1 on identical artifacts (goal: 0);
- p50 spread per row: std / mean of the row's p50 over the reruns (goal: <= 2% quiet, <= 5%
  under the burner), and the worst row;
- ranking flips: pairs of rows on one target whose speedup intervals do not overlap in two
  reruns, yet rank the other way round in one of them (goal: 0);
- unstable rows and budgets the gate left unjudged because of them;
- the 1-minute load average before and after.

Usage (from the repository root, in the venv)::

    python benchmarks/bench_stability.py [--reruns 10] [--recipes R1.yaml R2.yaml] [--work DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_RECIPES = ["recipes/digits_cnn.yaml", "recipes/gratings_mobilenet_v1.yaml"]


def burn(stop) -> None:
    """Spin on one core until ``stop`` is set: a neighbour job on a shared CI machine."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def edgekit(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env)


def load() -> float:
    return os.getloadavg()[0]


def rerun_set(recipe: Path, work: Path, reruns: int, env: dict) -> list[dict]:
    """``reruns`` bench-only rebuilds of ``recipe``; their results."""
    out = []
    for i in range(reruns):
        run_dir = work / f"run{i}"
        done = edgekit("build", str(recipe), "--out", str(run_dir), "--force", "--retime", env=env)
        if done.returncode not in (0, 1):  # 1: a row failed its budgets or status; still a result
            raise SystemExit(f"rerun {i} of {recipe} failed: {done.stdout[-800:]}{done.stderr[-800:]}")
        out.append(json.loads((run_dir / "results.json").read_text()))
    return out


def gate(work: Path, reruns: int, env: dict) -> tuple[int, int, int, list[str]]:
    """Check reruns 1.. against a baseline from rerun 0: (checks, false failures, budgets left
    unjudged as unstable, the failing lines)."""
    baseline = work / "baseline.json"
    saved = edgekit("baseline", "save", str(work / "run0"), str(baseline), env=env)
    if saved.returncode:
        raise SystemExit(f"baseline save failed: {saved.stdout}{saved.stderr}")
    failures, unjudged, lines = 0, 0, []
    for i in range(1, reruns):
        checked = edgekit("check", str(work / f"run{i}"), "--baseline", str(baseline), env=env)
        text = checked.stdout + checked.stderr
        unjudged += sum(" unstable " in line for line in text.splitlines())
        if checked.returncode != 0:
            failures += 1
            lines += [line for line in text.splitlines() if " FAIL " in line]
    return reruns - 1, failures, unjudged, lines


def spread(results: list[dict]) -> dict[str, float]:
    """Per row: std / mean of its p50 over the reruns."""
    p50s: dict[str, list[float]] = {}
    for doc in results:
        for row in doc["rows"]:
            if row.get("latency_ms"):
                p50s.setdefault(row["id"], []).append(row["latency_ms"]["p50"])
    return {rid: statistics.pstdev(v) / statistics.mean(v) for rid, v in p50s.items() if len(v) == len(results)}


def ratio_spread(results: list[dict]) -> dict[str, float]:
    """Per quantized row: std / mean over the reruns of its p50 / its fp32 sibling's p50, the
    within-run ratio the gate judges."""
    ratios: dict[str, list[float]] = {}
    for doc in results:
        for row in doc["rows"]:
            if row.get("vs_fp32_same_runtime"):
                ratios.setdefault(row["id"], []).append(1 / row["vs_fp32_same_runtime"])
    return {rid: statistics.pstdev(v) / statistics.mean(v) for rid, v in ratios.items() if len(v) == len(results)}


def ranking_flips(results: list[dict]) -> int:
    """Pairs of rows on one target that rank one way in a rerun where their p50 intervals do not
    overlap and the other way in another such rerun."""
    seen: dict[tuple[str, str], set[bool]] = {}
    for doc in results:
        rows = [r for r in doc["rows"] if r.get("latency_ms") and (r.get("timing") or {}).get("p50_ci95_ms")]
        for a, b in itertools.combinations(rows, 2):
            if a["target"] != b["target"]:
                continue
            (alo, ahi), (blo, bhi) = a["timing"]["p50_ci95_ms"], b["timing"]["p50_ci95_ms"]
            if ahi < blo or bhi < alo:  # clearly apart in this rerun
                seen.setdefault((a["id"], b["id"]), set()).add(a["latency_ms"]["p50"] < b["latency_ms"]["p50"])
    return sum(len(orders) > 1 for orders in seen.values())


def verdict_flips(results: list[dict]) -> list[str]:
    """Rows whose "slower than fp32" verdict (slower / no significant difference / none) was
    not the same in every rerun."""
    seen: dict[str, set[str]] = {}
    for doc in results:
        for row in doc["rows"]:
            notes = " ".join(row.get("notes") or [])
            verdict = "slower" if "slower than fp32" in notes else "not significant" if "no significant" in notes else "-"
            seen.setdefault(row["id"], set()).add(verdict)
    return [f"{rid} ({', '.join(sorted(v))})" for rid, v in seen.items() if len(v) > 1]


def unstable_rows(results: list[dict]) -> int:
    return sum(bool((r.get("timing") or {}).get("unstable")) for doc in results for r in doc["rows"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES)
    parser.add_argument("--reruns", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekit-stability"))
    parser.add_argument("--burners", type=int, default=1, help="CPU-burning processes in the loaded condition")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(args.work / "cache")}
    print(f"machine: {os.cpu_count()} cores; reruns per set: {args.reruns}; burner processes: {args.burners}")
    ok = True
    for recipe in map(Path, args.recipes):
        first = edgekit("build", str(recipe), "--out", str(args.work / recipe.stem / "first"), "--force", env=env)
        if first.returncode not in (0, 1):
            raise SystemExit(f"the first build of {recipe} failed: {first.stdout[-800:]}{first.stderr[-800:]}")
        for condition in ("quiet", "burner"):
            stop = multiprocessing.Event()
            burners = [multiprocessing.Process(target=burn, args=(stop,), daemon=True)
                       for _ in range(args.burners if condition == "burner" else 0)]
            for p in burners:
                p.start()
            before, started = load(), time.perf_counter()
            work = args.work / recipe.stem / condition
            try:
                results = rerun_set(recipe, work, args.reruns, env)
                checks, failures, unjudged, lines = gate(work, args.reruns, env)
            finally:
                stop.set()
                for p in burners:
                    p.join()
            spreads = spread(results)
            worst = max(spreads, key=spreads.get)
            flips = ranking_flips(results)
            goal = 0.02 if condition == "quiet" else 0.05
            print(f"\n{recipe.stem} [{condition}] load {before:.2f} -> {load():.2f}, {time.perf_counter() - started:.0f} s")
            print(f"  false failures: {failures} of {checks} checks; budgets unjudged (unstable): {unjudged}; "
                  f"unstable rows: {unstable_rows(results)} of {sum(len(d['rows']) for d in results)}")
            print(f"  p50 spread over reruns: median {statistics.median(spreads.values()):.1%}, "
                  f"worst {spreads[worst]:.1%} ({worst}); goal <= {goal:.0%}")
            ratios = ratio_spread(results)
            if ratios:
                worst_ratio = max(ratios, key=ratios.get)
                print(f"  spread over reruns of the ratio to the fp32 sibling (what the gate judges): median "
                      f"{statistics.median(ratios.values()):.1%}, worst {ratios[worst_ratio]:.1%} ({worst_ratio})")
            print(f"  ranking flips where intervals do not overlap: {flips}")
            changed = verdict_flips(results)
            print(f"  'slower than fp32' verdicts that changed between reruns: {len(changed)}"
                  + (f" ({'; '.join(changed)})" if changed else ""))
            for rid, value in sorted(spreads.items(), key=lambda kv: -kv[1]):
                p50s = [r["latency_ms"]["p50"] * 1000 for d in results for r in d["rows"] if r["id"] == rid]
                print(f"    {rid:32s} spread {value:6.1%}  p50 us {min(p50s):8.1f} .. {max(p50s):8.1f}")
            for line in lines[:5]:
                print(f"    FAIL {line.strip()}")
            ok &= failures == 0 and flips == 0 and spreads[worst] <= goal
    print("\nall goals met" if ok else "\nsome goals missed (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
