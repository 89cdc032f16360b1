"""What a real-size model costs: MobileNetV2 from a model file through every format at fp32 and int8.

    python benchmarks/real_size.py [--size 224] [--alpha 1.0] [--test-images 256] [--train-images 256]
                                   [--formats tflite,onnx,openvino] [--precisions fp32,int8] [--scratch DIR]

Offline, the script makes a tf_keras ``MobileNetV2(weights=None)`` of the given width and input
size with ImageNet's 1000-way classifier head (3.5M parameters at alpha 1.0; the labels use the first
--classes of its outputs), saves it as a .keras file, writes an npz of generated images (class-
dependent blobs on noise, uint8 so the file has a realistic size; x_train/y_train/x_test/y_test,
so the test split is exactly --test-images), and a recipe with ``model.file``, ``data: npz`` and
the formats and precisions. It then runs ``python -m edgekit build`` in a subprocess with a stage
cache of its own (fresh every time) and prints:

- per stage: the wall seconds of results.json ``stages`` (and build_seconds);
- per process of the build's tree (the build itself, each worker, each probe): peak resident
  memory, as the largest VmRSS sampled every 0.1 s from /proc and the VmHWM the kernel kept
  (the larger of the two is the peak); the peak of the sum over the tree (what the machine had
  to hold at once);
- per format: the seconds of its conversions and evaluations, from the ``[convert]`` and
  ``[evaluate]`` progress lines' timestamps;
- which stage dominates.

Timings on a shared machine move with its load: the load average is printed before and after.
The goals of issue 16 item 2 (alpha 1.0, 224x224, 3.5M parameters): peak RSS under 4 GB, and
conversion + evaluation under 2 minutes per format on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def make_inputs(folder: Path, size: int, alpha: float, classes: int, train: int, test: int, seed: int,
                outputs: int = 1000) -> tuple[Path, Path, int]:
    """The model file and the npz (made in a child process so its memory is not the build's)."""
    model_path, data_path = folder / f"mobilenet_v2_{alpha}_{size}.keras", folder / f"images_{size}.npz"
    script = f"""
import os, numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tf_keras as keras
base = keras.applications.MobileNetV2(input_shape=({size}, {size}, 3), alpha={alpha}, include_top=False, weights=None, pooling="avg")
out = keras.layers.Dense({max(outputs, classes)}, activation="softmax", name="head")(keras.layers.Dropout(0.2)(base.output))
model = keras.Model(base.input, out, name="mobilenet_v2")
model.save({str(model_path)!r})
print(model.count_params())
rng = np.random.default_rng({seed})
def images(n):
    y = rng.integers(0, {classes}, n)
    x = rng.integers(0, 64, (n, {size}, {size}, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:{size}, 0:{size}] / {size}
    for i, c in enumerate(y):  # a bright blob whose place and colour say the class
        cy, cx = 0.2 + 0.6 * (c % 3) / 2, 0.2 + 0.6 * (c // 3) / 3
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        x[i, ..., c % 3] = np.clip(x[i, ..., c % 3] + 190 * blob, 0, 255).astype(np.uint8)
    return x, y
x_train, y_train = images({train})
x_test, y_test = images({test})
np.savez({str(data_path)!r}, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"making the model and data failed:\n{done.stderr[-3000:]}")
    return model_path, data_path, int(done.stdout.strip().splitlines()[-1])


def write_recipe(folder: Path, model_path: Path, data_path: Path, formats: list[str], precisions: list[str], calib: int) -> Path:
    recipe = folder / "real_size.yaml"
    recipe.write_text(f"""name: real_size
seed: 0
task: classification
data:
  source: npz
  path: {data_path}
  val_fraction: 0.1
  normalize: none
model:
  file: {model_path}
quantize:
  precisions: [{", ".join(precisions)}]
  calibration_samples: {calib}
export:
  formats: [{", ".join(formats)}]
benchmark: {{warmup: 5, runs: 20, threads: 1, inputs: 4}}
""")
    return recipe


def _status(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "PPid"):
            fields[key] = int(value.split()[0])
    return fields


def _cmdline(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [p.decode(errors="replace") for p in parts if p]
    # name a process by what it runs: "-m edgekit build", "-m edgekit.evaluate.worker", "-c ..."
    for i, word in enumerate(words):
        if word in ("-m", "-c") and i + 1 < len(words):
            return " ".join(words[i : i + 3])[:70] if word == "-m" else "python -c " + words[i + 1][:40].replace("\n", " ")
    return " ".join(words)[:70]


class TreeSampler(threading.Thread):
    """Samples VmRSS and VmHWM of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peaks: dict[int, dict] = {}
        self.total_peak = 0
        self.total_peak_at = 0.0
        self.started = time.perf_counter()
        self.stop = threading.Event()

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(parents.get(pid, []))
        return tree

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in self._tree():
                status = _status(pid)
                if status is None or "VmRSS" not in status:  # gone, or a zombie (no memory left)
                    continue
                peak = self.peaks.setdefault(pid, {"cmd": _cmdline(pid), "rss": 0, "hwm": 0,
                                                   "first": time.perf_counter() - self.started, "last": 0.0,
                                                   "rss_at": 0.0})
                if status.get("VmRSS", 0) > peak["rss"]:
                    peak["rss"], peak["rss_at"] = status["VmRSS"], time.perf_counter() - self.started
                peak["hwm"] = max(peak["hwm"], status.get("VmHWM", 0))
                peak["last"] = time.perf_counter() - self.started
                total += status.get("VmRSS", 0)
            if total > self.total_peak:
                self.total_peak, self.total_peak_at = total, time.perf_counter() - self.started
            self.stop.wait(self.interval)


STAMP = re.compile(r"^\[(\w+)\]")


def run_build(recipe: Path, out: Path, cache_dir: Path) -> dict:
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1", "CI": "1",
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out), "--fresh"]
    lines: list[tuple[float, str]] = []
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(process.pid)
    sampler.start()
    for line in process.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": wall, "lines": lines, "peaks": sampler.peaks,
            "total_peak_kb": sampler.total_peak, "total_peak_at": sampler.total_peak_at,
            "root_maxrss_kb": usage.ru_maxrss, "results": results}


def format_seconds(lines: list[tuple[float, str]], formats: list[str]) -> dict[str, float]:
    """Seconds of the worker's conversions and evaluations, per format: a ``[convert] FORMAT-...``
    line starts a variant, whose [layers] and [eval] lines follow; each line's span (to the next
    line) counts for the format it names."""
    per = {f: 0.0 for f in formats}
    for (t, line), (t_next, _) in zip(lines, lines[1:]):
        match = re.match(r"^\[(convert|eval|layers)\] ([\w.]+?)-", line)
        if match and match.group(2) in per:
            per[match.group(2)] += t_next - t
    return per


def show(r: dict, formats: list[str]) -> None:
    print(f"\nbuild: rc {r['rc']}, wall {r['wall_s']:.1f} s, build_seconds {r['results'].get('build_seconds')}")
    stages = r["results"].get("stages", {})
    if stages:
        print("stage seconds (results.json):")
        for name, seconds in stages.items():
            print(f"  {name:<12} {seconds}")
        numeric = {k: v for k, v in stages.items() if isinstance(v, (int, float))}
        if "convert_evaluate_wall" in numeric:  # convert and evaluate are sums over the workers: their wall time
            numeric = {k: v for k, v in numeric.items() if k not in ("convert", "evaluate")}
        if numeric:
            top = max(numeric, key=numeric.get)
            print(f"dominating stage: {top} ({numeric[top]:.1f} s of {sum(numeric.values()):.1f} s)")
    print("\npeak memory per process (MiB; rss = largest sampled VmRSS, hwm = kernel VmHWM):")
    print(f"  {'pid':>7} {'rss':>7} {'hwm':>7} {'from-to s':>13}  command; at its peak (s), the last progress line")
    for pid, p in sorted(r["peaks"].items(), key=lambda kv: kv[1]["first"]):
        if max(p["rss"], p["hwm"]) < 20 * 1024:
            continue  # shells and short helpers
        during = next((line for t, line in reversed(r["lines"]) if t <= p["rss_at"] and line.startswith("[")), "")
        print(f"  {pid:>7} {p['rss'] / 1024:7.0f} {p['hwm'] / 1024:7.0f} {p['first']:6.1f}-{p['last']:<6.1f}  {p['cmd']}")
        print(f"  {'':>7} at {p['rss_at']:.1f} s: {during[:100]}")
    largest = max((max(p["rss"], p["hwm"]) for p in r["peaks"].values()), default=0)
    print(f"largest single process: {largest / 1024:.0f} MiB; build process ru_maxrss {r['root_maxrss_kb'] / 1024:.0f} MiB; "
          f"peak of the tree's sum: {r['total_peak_kb'] / 1024:.0f} MiB at {r['total_peak_at']:.1f} s")
    per = format_seconds(r["lines"], formats)
    print("\nconversion + evaluation per format (s, every precision, from the progress lines' times):")
    for name, seconds in per.items():
        print(f"  {name:<10} {seconds:6.1f}")
    if r["rc"] != 0:
        print("\nlast lines:\n" + "\n".join("    " + line for _, line in r["lines"][-25:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier")
    parser.add_argument("--classes", type=int, default=10, help="classes in the generated labels")
    parser.add_argument("--outputs", type=int, default=1000, help="width of the classifier head (1000: ImageNet's, as the "
                        "Keras model with its top; at least --classes)")
    parser.add_argument("--train-images", type=int, default=256, help="train split (a tenth becomes val)")
    parser.add_argument("--test-images", type=int, default=256, help="test split")
    parser.add_argument("--calibration", type=int, default=100, help="calibration samples")
    parser.add_argument("--formats", default="tflite,onnx,openvino")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the model, data and run here (default: a temporary folder)")
    parser.add_argument("--show-log", action="store_true", help="print the build's output with timestamps")
    args = parser.parse_args()
    formats, precisions = args.formats.split(","), args.precisions.split(",")
    with tempfile.TemporaryDirectory(prefix="edgekit-real-") as temporary:
        scratch = args.scratch or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        model_path, data_path, params = make_inputs(scratch, args.size, args.alpha, args.classes,
                                                     args.train_images, args.test_images, seed=0, outputs=args.outputs)
        print(f"MobileNetV2 alpha {args.alpha} {args.size}x{args.size}x3: {params:,} parameters, "
              f"{model_path.stat().st_size / 1e6:.1f} MB; npz {data_path.stat().st_size / 1e6:.1f} MB "
              f"({args.train_images} train, {args.test_images} test); made in {time.perf_counter() - t0:.1f} s")
        recipe = write_recipe(scratch, model_path, data_path, formats, precisions, args.calibration)
        print(f"recipe {recipe}  cores {os.cpu_count()}  python {sys.version.split()[0]}\nload before {load()}", flush=True)
        result = run_build(recipe, scratch / "run", scratch / "cache")
        print(f"load after {load()}")
        if args.show_log:
            print("\n".join(f"{t:7.1f} {line}" for t, line in result["lines"]))
        show(result, formats)
        return result["rc"]


if __name__ == "__main__":
    sys.exit(main())
