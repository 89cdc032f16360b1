"""How fast is the pipeline itself: one fresh build, then N fully cached rebuilds of a recipe.

    python benchmarks/pipeline_speed.py [--recipe recipes/digits_cnn.yaml] [-n 5] [--cache-dir DIR] [--new-dir]

Each build runs as `python -m edgekit build RECIPE --out DIR` in its own process, with a stage
cache of its own (EDGEKIT_CACHE_DIR: a fresh temporary folder, unless --cache-dir; the first build
then trains and converts everything, the next ones reuse every stage). Per build it prints:

- wall: seconds from starting the process to its exit;
- rss: peak resident memory of the build's largest process (os.wait4 of that child, the
  per-child form of resource.getrusage(RUSAGE_CHILDREN));
- tf: whether TensorFlow (and tf_keras, tfmot, tf2onnx, nncf) got imported in the build's own
  process (EDGEKIT_DEBUG_IMPORTS=1 makes `edgekit build` print that on stderr as it exits; a
  worker process's imports are not counted there);
- exit: seconds from the results line on stdout to the process exit (PYTHONUNBUFFERED=1, so
  the line arrives when it is printed);
- build_s and the per-stage seconds from results.json, and how many entries came from the cache.

Timings on a shared machine move with its load: the 1-minute load average is printed before
every build. The goals of issue 14 part 7: a cached rebuild of digits_cnn under 1.5 s wall,
without TensorFlow, and an exit within a fraction of a second of the results line; of issue 28
item 5: the same into a new run directory each time (--new-dir: the report's plots then come
from the stage cache's plots entries, drawn once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def run_build(recipe: Path, out: Path, cache_dir: Path, fresh: bool = False) -> dict:
    """One `edgekit build` in its own process; what it cost."""
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache_dir), "EDGEKIT_DEBUG_IMPORTS": "1", "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "CI": "1",
           # this checkout's edgekit, whatever the virtual environment has installed
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out)] + (["--fresh"] if fresh else [])
    seen: dict[str, float] = {}
    stderr_lines: list[str] = []
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read_stdout() -> None:
        for line in process.stdout:
            if line.startswith("results:"):
                seen["results_line"] = time.perf_counter()

    def read_stderr() -> None:
        for line in process.stderr:
            stderr_lines.append(line.rstrip("\n"))
            if "first_log" not in seen and line.startswith("["):
                seen["first_log"] = time.perf_counter()

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    imported = next((line.split("imported:", 1)[1].strip() for line in stderr_lines if "[debug] imported:" in line), None)
    from edgekit.cli import TRAINING_MODULES  # what `[debug] imported:` may not show for a cached build

    results = {}
    if (out / "results.json").is_file():
        results = json.loads((out / "results.json").read_text())
    reused = sum(len(v) for v in results.get("reused", {}).values())
    return {
        "rc": process.returncode,
        "wall_s": ended - started,
        "rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "imported": imported,
        "tf": None if imported is None else any(f"{name}=yes" in imported for name in TRAINING_MODULES),
        "exit_s": ended - seen["results_line"] if "results_line" in seen else None,
        "start_s": seen["first_log"] - started if "first_log" in seen else None,
        "build_s": results.get("build_seconds"),
        "stages": results.get("stages", {}),
        "reused": reused,
        "tail": stderr_lines[-15:],
    }


def show(kind: str, r: dict) -> None:
    stages = " ".join(f"{k} {v}" for k, v in r["stages"].items()) if isinstance(r["stages"], dict) else ""
    exit_s = f"{r['exit_s']:.2f}" if r["exit_s"] is not None else "?"
    start_s = f"{r['start_s']:.2f}" if r["start_s"] is not None else "?"
    print(f"{kind:<7} rc {r['rc']}  wall {r['wall_s']:6.2f} s  rss {r['rss_mb']:6.0f} MB"
          f"  tf {'yes' if r['tf'] else 'no' if r['tf'] is not None else '?'}"
          f"  exit {exit_s} s  first line {start_s} s  build_s {r['build_s']}  reused {r['reused']}  [{stages}]", flush=True)
    if r["rc"] != 0:
        print("\n".join("    " + line for line in r["tail"]), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "digits_cnn.yaml")
    parser.add_argument("-n", "--repeat", type=int, default=5, help="cached rebuilds after the fresh build")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="stage cache to use (default: a new temporary folder, so the first build is fresh)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh build (the cache is already full)")
    parser.add_argument("--new-dir", action="store_true", help="every cached rebuild into a new run directory (nothing "
                        "of the earlier run's files to reuse: only the stage cache)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-speed-") as scratch:
        cache_dir = args.cache_dir or Path(scratch) / "cache"
        out = Path(scratch) / "run"
        print(f"recipe {args.recipe}  cache {cache_dir}  cores {os.cpu_count()}  python {sys.version.split()[0]}")
        if not args.no_fresh:
            print(f"load {load()}")
            show("fresh", run_build(args.recipe.resolve(), out, cache_dir))
        cached = []
        for i in range(args.repeat):
            print(f"load {load()}")
            result = run_build(args.recipe.resolve(), out.with_name(f"run{i}") if args.new_dir else out, cache_dir)
            show("cached", result)
            cached.append(result)
        if cached:
            walls = [r["wall_s"] for r in cached]
            exits = [r["exit_s"] for r in cached if r["exit_s"] is not None]
            print(f"cached rebuilds: wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); "
                  f"rss median {statistics.median(r['rss_mb'] for r in cached):.0f} MB; "
                  f"tf imported in {sum(bool(r['tf']) for r in cached)}/{len(cached)}; "
                  f"exit median {statistics.median(exits) if exits else float('nan'):.2f} s; load {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
