"""The fp32 GPU baseline on a real GPU: what the machine has, two zoo recipes on cpu and gpu, and
each Keras 3 backend forced once.

    python benchmarks/gpu_baseline.py prepare [--cache DIR]          # here, before a GPU session
    python benchmarks/gpu_baseline.py run [--cache DIR] [--out DIR]  # on the GPU machine
    python benchmarks/gpu_baseline.py run --cpu-test-mode            # the same steps without a GPU

`prepare` builds the recipes on this machine's CPU into a stage cache (DIR, default
`.gpu-cache/`, small: a few MB), so that the GPU machine, given the cache with the working tree,
trains nothing: its builds take the data, models, artifacts and evaluations from the cache and
time the rows. Cache keys include the installed package versions, so the cache helps only where
the GPU machine runs the same TensorFlow, tf_keras, onnxruntime and OpenVINO; elsewhere the run
trains again (seconds for these recipes) and says so.

`run` does, in order, each step bounded by what is left of `--budget-s` (default 420 s, so the
whole script ends inside 8 minutes on a machine that has edgekit's dependencies):

1. discovery, each in a process of its own (importing TensorFlow or JAX here would take the
   GPU's memory): nvidia-smi, the CUDA version it reports, which of TensorFlow, JAX and PyTorch
   see a GPU, onnxruntime's providers;
2. every recipe with ``targets: [cpu, gpu]``: the gpu rows (backend, device, batch-1 p50 with its
   95% interval, batch-64 throughput) beside the cpu rows, and the GPU's batch-1 p50 against
   the fastest CPU variant's;
3. the Keras row once more on each Keras 3 backend, forced with EDGEKIT_GPU_BACKEND (jax, torch),
   ``targets: [gpu]`` only.

It prints one table and writes ``gpu_baseline.json`` (discovery, every row, the timings of the
steps) into `--out`. `--cpu-test-mode` sets EDGEKIT_GPU_ALLOW_CPU=1: the JAX/PyTorch rows then
run on the CPU and say "cpu (test mode)"; they are never GPU numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("digits_cnn", "resnet8_gratings")
FORCED_BACKENDS = ("jax", "torch")
DEFAULT_CACHE = ROOT / ".gpu-cache"

#: one probe per framework, each run by a fresh Python: (name, code printing one JSON line)
PROBES = {
    "tensorflow": "import json, tensorflow as tf; print(json.dumps({'version': tf.__version__, "
                  "'gpus': [d.name for d in tf.config.list_physical_devices('GPU')], "
                  "'cuda': tf.sysconfig.get_build_info().get('cuda_version')}))",
    "jax": "import json, jax; print(json.dumps({'version': jax.__version__, "
           "'devices': [f'{d.platform}:{d.device_kind}' for d in jax.devices()]}))",
    "torch": "import json, torch; print(json.dumps({'version': torch.__version__, "
             "'cuda_available': torch.cuda.is_available(), 'cuda': torch.version.cuda, "
             "'devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}))",
    "onnxruntime": "import json, onnxruntime as ort; print(json.dumps({'version': ort.__version__, "
                   "'providers': ort.get_available_providers()}))",
    "keras": "import json, keras; print(json.dumps({'version': keras.__version__}))",
}


# --------------------------------------------------------------------------- discovery


def _probe(code: str, timeout: float) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer in {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": last[-1].strip()[:200] if last else f"exit {done.returncode}"}
    return json.loads(lines[-1])


def nvidia_smi() -> dict:
    """GPU names, driver, memory and the CUDA version nvidia-smi reports (its header)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {"error": "nvidia-smi not found"}
    try:
        query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"nvidia-smi: {exc}"}
    gpus = [dict(zip(("name", "driver", "memory"), (p.strip() for p in line.split(","))))
            for line in query.stdout.splitlines() if line.strip()]
    cuda = next((line.split("CUDA Version:")[1].split()[0] for line in header.splitlines() if "CUDA Version:" in line),
                None)
    return {"gpus": gpus, "cuda": cuda}


def discover(timeout: float = 120.0, only=tuple(PROBES)) -> dict:
    """What this machine has for the GPU baseline: one fresh process per framework (``only``)."""
    found = {"nvidia_smi": nvidia_smi()}
    for name, code in PROBES.items():
        if name not in only:
            continue
        found[name] = _probe(code, timeout)
    return found


def gpu_visible(found: dict) -> dict[str, bool]:
    """Which runtimes can put the baseline on a GPU, from ``discover()``'s answers."""
    tf, jax, torch, ort = (found.get(k, {}) for k in ("tensorflow", "jax", "torch", "onnxruntime"))
    return {"tensorflow": bool(tf.get("gpus")),
            "jax": any(not d.startswith("cpu") for d in jax.get("devices", [])),
            "torch": bool(torch.get("cuda_available")),
            "onnxruntime": "CUDAExecutionProvider" in ort.get("providers", [])}


# --------------------------------------------------------------------------- the builds


def recipe_for(name: str, folder: Path, targets: list[str]) -> Path:
    """The zoo recipe ``name`` with ``targets`` (everything else as the zoo has it: its stage
    keys, and so the cache, stay the same)."""
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
    recipe["targets"] = targets
    path = folder / f"{name}-{'-'.join(targets)}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def build(recipe: Path, out: Path, cache: Path, env: dict[str, str], timeout: float) -> dict:
    """One `edgekit build` in a process of its own: its exit code, seconds, results and stages."""
    started = time.perf_counter()
    environ = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), **env}
    try:
        done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out)],
                              env=environ, capture_output=True, text=True, timeout=max(timeout, 1.0))
        code, tail = done.returncode, (done.stdout + done.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        code, tail = None, f"stopped after {timeout:.0f} s (the budget)"
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    return {"recipe": recipe.stem, "exit": code, "seconds": round(time.perf_counter() - started, 1),
            "env": env, "results": results, "tail": tail if code not in (0, 1) else ""}


def _trained_here(results: dict | None) -> bool:
    """Whether the build trained (a cache miss): its manifest says which stages were computed."""
    return bool(results) and (results.get("stages") or {}).get("train", 0) > 5.0


def summarize(built: dict, label: str | None = None) -> list[dict]:
    """The rows of one build that matter here: every gpu row, and the cpu rows (fp32 baseline and
    the fastest ok variant), each with its p50, interval, backend, device and throughput."""
    results = built.get("results") or {}
    lines = []
    cpu_ok = [r for r in results.get("rows", []) if r.get("target") == "cpu" and r.get("status") == "ok"
              and (r.get("latency_ms") or {}).get("p50")]
    fastest_cpu = min(cpu_ok, key=lambda r: r["latency_ms"]["p50"], default=None)
    for row in results.get("rows", []):
        target, settings = row.get("target"), row.get("settings") or {}
        if target == "cpu" and row not in (fastest_cpu,) and row.get("format") != "keras":
            continue
        latency = row.get("latency_ms") or {}
        throughput = settings.get("throughput") or {}
        line = {"recipe": label or built["recipe"], "id": row.get("id"), "status": row.get("status"),
                "reason": row.get("reason"), "backend": settings.get("backend") or row.get("runtime"),
                "device": settings.get("device"), "p50_ms": latency.get("p50"),
                "p50_ci_ms": (row.get("timing") or {}).get("p50_ci95_ms"), "throughput_per_s": throughput.get("samples_per_s"),
                "throughput_batch": throughput.get("batch"), "fastest_cpu": row is fastest_cpu}
        if target == "gpu" and latency.get("p50") and fastest_cpu:
            line["vs_fastest_cpu"] = {"id": fastest_cpu["id"], "p50_ms": fastest_cpu["latency_ms"]["p50"],
                                      "gpu_over_cpu": latency["p50"] / fastest_cpu["latency_ms"]["p50"]}
        lines.append(line)
    return lines


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} us" if value < 1 else f"{value:.3f} ms"


def table(lines: list[dict]) -> str:
    out = [f"{'recipe':26} {'row':28} {'status':8} {'backend / device':44} {'p50 (95% CI)':30} {'batch-64/s':>10}"]
    for line in lines:
        ci = line.get("p50_ci_ms")
        p50 = _ms(line["p50_ms"]) + (f" [{_ms(ci[0])}, {_ms(ci[1])}]" if ci else "")
        who = f"{line.get('backend') or '-'} / {line.get('device') or '-'}"[:44]
        rate = f"{line['throughput_per_s']:.0f}" if line.get("throughput_per_s") else "-"
        mark = " (fastest cpu)" if line.get("fastest_cpu") else ""
        out.append(f"{line['recipe']:26} {str(line['id']) + mark:28} {str(line['status']):8} {who:44} {p50:30} {rate:>10}")
        if line.get("status") != "ok" and line.get("reason"):
            out.append(f"{'':26}   {line['reason'][:150]}")
        if "vs_fastest_cpu" in line:
            vs = line["vs_fastest_cpu"]
            word = "slower" if vs["gpu_over_cpu"] > 1 else "faster"
            out.append(f"{'':26}   batch 1: {vs['gpu_over_cpu']:.2f}x the p50 of the fastest cpu row "
                       f"{vs['id']} ({_ms(vs['p50_ms'])}): the GPU is {word}")
    return "\n".join(out)


# --------------------------------------------------------------------------- commands


def prepare(cache: Path, recipes=RECIPES) -> int:
    """Build every recipe on this CPU into ``cache`` (``targets: [cpu]``: the stages a GPU run
    reuses do not depend on the targets)."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-baseline-") as tmp:
        for name in recipes:
            built = build(recipe_for(name, Path(tmp), ["cpu"]), Path(tmp) / name, cache, {}, timeout=1800)
            print(f"{name}: exit {built['exit']} in {built['seconds']} s")
    # The data stage of builtin sources is generated or read from an installed package, the same
    # bytes every time: the GPU machine recomputes it in seconds, and the tree that travels
    # stays small (gratings32 alone is 38 MiB of the 41).
    shutil.rmtree(cache / "data", ignore_errors=True)
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    print(f"cache {cache}: {size / 2**20:.1f} MiB (the data stage left out: it is recomputed)")
    return 0


def run(cache: Path, out: Path, budget_s: float, cpu_test_mode: bool, recipes=RECIPES,
        backends=FORCED_BACKENDS) -> dict:
    started = time.perf_counter()

    def left() -> float:
        return budget_s - (time.perf_counter() - started)

    env = {"EDGEKIT_GPU_ALLOW_CPU": "1"} if cpu_test_mode else {}
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"cpu_test_mode": cpu_test_mode, "budget_s": budget_s, "steps": []}
    t0 = time.perf_counter()
    report["discovery"] = found = discover(timeout=min(120.0, max(left() / 4, 10.0)))
    report["gpu_visible"] = gpu_visible(found)
    report["steps"].append({"step": "discovery", "seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps({"discovery": found, "gpu_visible": report["gpu_visible"]}, indent=1), flush=True)

    report["rows"], report["builds"] = [], []
    plan = [(name, ["cpu", "gpu"], {}) for name in recipes]
    plan += [(recipes[0], ["gpu"], {"EDGEKIT_GPU_BACKEND": backend}) for backend in backends]
    for name, targets, extra in plan:
        tag = "-".join(targets) + "".join(f"-{v}" for v in extra.values())
        if left() < 20:
            report["builds"].append({"recipe": name, "targets": targets, "env": extra, "exit": None,
                                     "skipped": f"not started: {left():.0f} s of the budget left"})
            print(f"[gpu-baseline] {name} ({tag}): skipped, out of budget", flush=True)
            continue
        recipe = recipe_for(name, out, targets)
        built = build(recipe, out / f"{name}-{tag}", cache, {**env, **extra}, timeout=left())
        built["targets"], built["trained_here"] = targets, _trained_here(built["results"])
        print(f"[gpu-baseline] {name} ({tag}): exit {built['exit']} in {built['seconds']} s"
              f"{' (trained here: the carried cache did not match)' if built['trained_here'] else ''}", flush=True)
        if built["tail"]:
            print(built["tail"], flush=True)
        lines = summarize(built, label=f"{name} [{tag}]")
        report["rows"] += lines
        report["builds"].append({k: v for k, v in built.items() if k != "results"}
                                | {"environment": (built["results"] or {}).get("environment", {}).get("gpu")})
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "gpu_baseline.json").write_text(json.dumps(report, indent=1, default=str))
    print(table(report["rows"]))
    print(f"[gpu-baseline] {report['seconds']} s in all; {out / 'gpu_baseline.json'}")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="fill the stage cache here (trains on this CPU)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    r = sub.add_parser("run", help="discover, build on cpu and gpu, force each Keras 3 backend")
    r.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu-baseline"))
    r.add_argument("--budget-s", type=float, default=420.0)
    r.add_argument("--cpu-test-mode", action="store_true", help="EDGEKIT_GPU_ALLOW_CPU=1: run without a GPU")
    r.add_argument("--recipes", nargs="+", default=list(RECIPES))
    r.add_argument("--backends", nargs="*", default=list(FORCED_BACKENDS))
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args.cache.resolve())
    report = run(args.cache.resolve(), args.out.resolve(), args.budget_s, args.cpu_test_mode, tuple(args.recipes),
                 tuple(args.backends))
    return 0 if all(b.get("exit") in (0, 1) for b in report["builds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
