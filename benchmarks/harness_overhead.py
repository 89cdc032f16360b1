"""How close edgekit's timed call is to each runtime's own figure: the harness overhead (issue 14, part 4).

    python benchmarks/harness_overhead.py [--run RUN_DIR]... [--reps 3] [--only GLOB] [--sessions-from DIR]

For every artifact of each run directory (default: builds recipes/digits_cnn.yaml and
recipes/resnet8_gratings.yaml into runs/<name>/, from the stage cache when it has them) it
prints, per runtime and precision:

- edgekit p50: edgekit's own timing loop (``time_session``, THE loop of every build) over 16
  prepared inputs, with the session the build uses;
- runtime-only p50: the session's ``harness_cost`` figure for the runtime's own part (bare
  LiteRT Invoke; OpenVINO's request.latency; onnxruntime's bare C++ IOBinding run), "-" for
  sessions without one (``--sessions-from`` an older checkout);
- native: each runtime's own tool or nearest equivalent, run on the same file, 1 thread:
  OpenVINO ``benchmark_app -hint none -nstreams 1 -nthreads 1 -infer_precision f32|bf16``
  (median); LiteRT: a bare ``Interpreter.invoke()`` loop on a set input (median), and
  ``litert-benchmark`` (its CompiledModel API; it prints ms to 2 decimals, so its mean is
  derived from its throughput line); onnxruntime ships no CLI tool: a bare ``session.run``
  loop on a prepared feed dict (median);
- ratio: edgekit p50 / native, and whether it meets the goal: at most 10% (or 1.5 us) over
  native on the digits CNN, 5% at ResNet-8 size (runs whose TFLite fp32 file is over 100 KiB);
  a p50 under the native figure meets it (the reference loop has a harness of its own).

Every figure is the median of ``--reps`` repetitions, measured one after the other, so a busy
phase of a shared machine moves them all; the 1-minute load average is printed before each
run. ``--sessions-from DIR`` imports edgekit's runtime sessions from DIR (e.g. ``git archive
HEAD edgekit | tar -x -C DIR``) to measure the figures before a change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RECIPES = [ROOT / "recipes" / "digits_cnn.yaml", ROOT / "recipes" / "resnet8_gratings.yaml"]


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def build(recipe: Path) -> Path:
    """``edgekit build RECIPE`` into runs/<name>/ (cached stages are reused); the run directory."""
    out = ROOT / "runs" / recipe.stem
    env = {**os.environ, "CI": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"edgekit build {recipe} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return out


def samples_for(shape, n: int = 16) -> list[np.ndarray]:
    """Fixed inputs in [0, 1) of the model's shape without the batch axis (the timing does not
    depend on the values; the sessions quantize them as they would test samples)."""
    rng = np.random.default_rng(0)
    return [rng.random(tuple(shape[1:])).astype(np.float32) for _ in range(n)]


def edgekit_figures(fmt, path: Path, runs: int) -> dict:
    from edgekit.bench.timing import time_session

    session = fmt.load_runtime()(path, 1, {})
    samples = samples_for(session.input_shape)
    p50 = float(np.median(time_session(session, samples, warmup=max(50, runs // 10), runs=runs)))
    harness = getattr(session, "harness_cost", None)
    cost = harness(session.prepare(samples[0][None]), runs=max(200, runs // 2)) if harness else None
    return {"p50_ms": p50, "runtime_only_ms": (cost or {}).get("runtime_only_ms"), "how": (cost or {}).get("how"),
            "timed_call": session.timed_call, "precision": session.settings.get("inference_precision")}


def _median_loop(call, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    clock, out = time.perf_counter_ns, []
    for _ in range(runs):
        start = clock()
        call()
        out.append(clock() - start)
    return float(np.median(out)) / 1e6


def native_litert(path: Path, runs: int) -> list[tuple[str, float | None]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    bare = _median_loop(interpreter.invoke, runs, max(50, runs // 10))
    figures = [("Interpreter.invoke() loop, median", bare)]
    tool = BIN / "litert-benchmark"
    if tool.exists():
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([str(tool), "--model", str(path), "--num_runs", str(runs), "--warmup_runs",
                                   str(max(50, runs // 10)), "--num_threads", "1", "--result_json", f"{tmp}/r.json"],
                                  capture_output=True, text=True, timeout=600, check=False)
            mean = None
            if done.returncode == 0:
                result = json.loads(Path(f"{tmp}/r.json").read_text())
                in_bytes = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
                throughput = result.get("throughput_mb_s") or 0
                # its own formula: throughput = input MiB / mean seconds; the ms fields are rounded
                mean = (in_bytes / 1048576) / throughput * 1e3 if throughput else None
            figures.append(("litert-benchmark (CompiledModel API), mean from throughput", mean))
    return figures


def native_onnxruntime(path: Path, runs: int) -> list[tuple[str, float | None]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    dtype = np.int32 if "int32" in inp.type else np.int64 if "int64" in inp.type else np.float32
    feed = {inp.name: np.zeros(shape, dtype)}
    names = [session.get_outputs()[0].name]
    return [("session.run loop (no CLI tool ships), median", _median_loop(lambda: session.run(names, feed), runs,
                                                                          max(50, runs // 10)))]


def native_openvino(path: Path, runs: int, precision: str) -> list[tuple[str, float | None]]:
    tool = BIN / "benchmark_app"
    done = subprocess.run([str(tool), "-m", str(path), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", "1",
                           "-infer_precision", precision, "-niter", str(runs)],
                          capture_output=True, text=True, timeout=600, check=False)
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", done.stdout)
    value = float(match.group(1)) / (1000 if match.group(2) == "us" else 1) if match else None
    return [(f"benchmark_app -hint none -nstreams 1 -nthreads 1 -infer_precision {precision}, median", value)]


def median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def us(ms) -> str:
    return "-" if ms is None else f"{ms * 1e3:.2f} us" if ms < 1 else f"{ms:.3f} ms"


def measure_run(run_dir: Path, reps: int, only: str = "*") -> list[dict]:
    from fnmatch import fnmatch

    from edgekit.formats import FORMATS

    results = json.loads((run_dir / "results.json").read_text())
    rows = [r for r in results["rows"] if r["format"] in FORMATS and r.get("status") == "ok" and r["target"] == "cpu"]
    big = any(r["format"] == "tflite" and r["precision"] == "fp32" and (r.get("size_bytes") or 0) > 100 * 1024 for r in rows)
    out = []
    for row in rows:
        if not fnmatch(row["id"], only):
            continue
        fmt = FORMATS[row["format"]]
        path = run_dir / "artifacts" / f"{row['id'].rsplit('@', 1)[0]}{fmt.suffix}"
        if not path.exists():
            continue
        guess = row.get("latency_ms", {}).get("p50") or 0.01
        runs = int(min(20000, max(1000, 0.4 / (guess / 1e3))))  # about 0.4 s of timed runs each
        figures = [edgekit_figures(fmt, path, runs) for _ in range(reps)]
        if fmt.name == "tflite":
            natives = [native_litert(path, runs) for _ in range(reps)]
        elif fmt.name == "onnx":
            natives = [native_onnxruntime(path, runs) for _ in range(reps)]
        else:
            precision = "bf16" if row["precision"] == "bf16" else "f32"
            natives = [native_openvino(path, runs, precision) for _ in range(reps)]
        native = [(label, median([n[i][1] for n in natives])) for i, (label, _) in enumerate(natives[0])]
        p50 = median([f["p50_ms"] for f in figures])
        own = median([f["runtime_only_ms"] for f in figures])
        reference = native[0][1]
        ratio = p50 / reference if p50 and reference else None
        # The goal bounds what edgekit adds over the runtime's own figure; a p50 under the
        # reference (whose own loop has overhead too) meets it, and is flagged when far under.
        tolerance, slack_ms = (0.05, 0.0) if big else (0.10, 1.5e-3)
        if ratio is None:
            verdict = "?"
        elif p50 - reference <= max(tolerance * reference, slack_ms):
            verdict = "ok" if ratio >= 1 - tolerance else "ok (faster than native)"
        else:
            verdict = f"over {tolerance:.0%}" + ("" if big else " / 1.5 us")
        out.append({"run": run_dir.name, "id": row["id"], "edgekit_p50_ms": p50, "runtime_only_ms": own,
                    "native": native, "ratio": ratio, "goal": verdict, "timed_call": figures[0]["timed_call"],
                    "how": figures[0]["how"], "runs": runs})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", help="a run directory (default: build the two recipes)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every figure (their median is shown)")
    parser.add_argument("--sessions-from", type=Path, help="import edgekit from this folder (the sessions before a change)")
    parser.add_argument("--only", default="*", help="rows whose id matches this glob (e.g. 'openvino-*')")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(args.sessions_from or ROOT))
    from edgekit.runtimes.openvino import disable_telemetry

    disable_telemetry()
    import edgekit.runtimes

    print(f"sessions from {Path(edgekit.runtimes.__file__).parents[1]}")
    runs = args.run or [build(recipe) for recipe in RECIPES]
    everything = []
    for run_dir in runs:
        print(f"\n== {run_dir}  (load average {load()})")
        print(f"{'row':<22} {'edgekit p50':>12} {'runtime-only':>13} {'native':>12} {'ratio':>7}  {'goal':<23}  native is")
        for r in measure_run(run_dir, args.reps, args.only):
            label, value = r["native"][0]
            ratio = f"{r['ratio']:.3f}" if r["ratio"] else "-"
            print(f"{r['id']:<22} {us(r['edgekit_p50_ms']):>12} {us(r['runtime_only_ms']):>13} {us(value):>12} "
                  f"{ratio:>7}  {r['goal']:<23}  {label}")
            for label, value in r["native"][1:]:
                print(f"{'':<22} {'':>12} {'':>13} {us(value):>12} {'':>7}  {'':<23}  {label}")
            everything.append(r)
        print(f"(load average after: {load()})")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
