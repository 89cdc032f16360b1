"""int8 against fp32, int8-fast and the folded input scaling: per model and runtime, one interleaved run.

    python benchmarks/int8_fast.py [--models digits,resnet8,mobilenet_v1,mobilenet_v2_96,mobilenet_v2_224]
                                   [--formats tflite,onnx,openvino] [--rounds 9] [--runs 360] [--threads 1]
                                   [--peak-fp32 86] [--peak-int8 355] [--scratch DIR]
    python benchmarks/int8_fast.py --recipes recipes/*.yaml [--formats ...]   # the zoo sweep

Offline. Each model is a zoo model at its recipe's size with random weights shaped like trained
ones (``trained_like``: no zero biases or unit statistics for converters to drop): the digits
CNN (8x8x1, recipes/digits_cnn.yaml), ResNet-8 (32x32x3), MobileNetV1 alpha 0.25 (32x32x3,
recipes/gratings_mobilenet_v1.yaml), MobileNetV2 alpha 0.35 at 96x96
(recipes/gratings96_mobilenet_v2.yaml) and Keras Applications' MobileNetV2 alpha 1.0 at 224x224
(its [0, 1] -> [-1, 1] scaling in front, as the zoo builds it). Calibration: uniform [0, 1]
images. Per format it converts:

- ``fp32 raw`` and ``int8 raw``: the model as it is, its input scaling an op of its own;
- ``fp32`` and ``int8``: with the scaling folded (``edgekit.convert.fold_input``, what builds do);
- ``int8-fast``: ``edgekit.convert.fast`` on the folded model (its own op timings and choice);

then times all five, and a second session of the fp32 file (A/A: what two sessions of one
artifact differ by, a floor under every verdict), in the runtime's timed session and loop
(``time_rounds``), interleaved in --rounds rounds, and prints each p50 and the ratios with 95%
intervals from the paired rounds:
int8 and int8-fast against fp32, the fold's gain at fp32 and at int8, and what share of one
core's peak each reaches (MACs counted from the Keras model: convolutions, depthwise
convolutions and dense layers; peaks measured on this machine with one core: fp32 FMA 86
GMAC/s, int8 VNNI 355 GMAC/s; give yours with --peak-fp32 / --peak-int8; OpenVINO runs int8 on
AMX where the CPU has it, whose peak is higher, so its plain int8 shares are upper bounds;
its int8-fast may run some convolutions on AVX-512 VNNI instead, where that was faster).

``--recipes`` sweeps recipes instead: each zoo recipe's model is built as its build builds it
(its data's shape and classes, the recipe's seed) with trained-like weights, calibrated on the
recipe's own calibration samples, and each format ends with a verdict: whether int8-fast, the
row edgekit offers for speed, is slower than the better of fp32 and plain int8 beyond both the
95% interval of the paired ratio and the A/A offset (it should never be: int8-fast falls back to
either). Recipes with a user builder or several inputs are listed as skipped, with why; run one
process per recipe (a shell loop) where a runtime may abort the process.

Ratios measured in one interleaved run survive a shared machine's load far better than
absolute times: the load average is printed before and after every model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name -> (zoo arch, params, input shape, classes, how the README calls it)
MODELS = {
    "digits": ("cnn", {"filters": [16, 32], "dense": 64}, (8, 8, 1), 10, "digits CNN 8x8"),
    "resnet8": ("resnet8", {}, (32, 32, 3), 10, "ResNet-8 32x32"),
    "mobilenet_v1": ("mobilenet_v1", {"alpha": 0.25, "blocks": 11, "dropout": 0.1}, (32, 32, 3), 10,
                     "MobileNetV1 a0.25 32x32"),
    "mobilenet_v2_96": ("mobilenet_v2", {"alpha": 0.35, "dropout": 0.2}, (96, 96, 3), 10, "MobileNetV2 a0.35 96x96"),
    "mobilenet_v2_224": ("mobilenet_v2", {"alpha": 1.0, "dropout": 0.2}, (224, 224, 3), 1000, "MobileNetV2 a1.0 224x224"),
}
ROWS = ("fp32 raw", "fp32", "int8 raw", "int8", "int8-fast", "fp32 again")


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def macs(model) -> int:
    """Multiply-accumulates of one inference: convolutions, depthwise convolutions and dense layers
    (not recurrent or attention layers: their recipes print a share of the peak that is too low)."""
    import numpy as np

    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "Dense"):
            continue
        kernel = layer.get_weights()[0]
        out = [d for d in layer.output.shape[1:-1] if d is not None]
        positions = int(np.prod(out)) if out else 1
        # per output position: kh * kw * cin * cout (depthwise: kh * kw * channels * multiplier; dense: in * out)
        total += positions * int(np.prod(kernel.shape))
    return total


def trained_like(model):
    """Give ``model`` weights shaped like a trained model's. A fresh model's biases and batch
    normalization statistics are constants (zeros and ones): converters then drop the zero
    biases, and OpenVINO's int8 MobileNetV2-96 ran 1.5x faster than the same model trained
    (219 vs 326 us, one interleaved run), so an untrained model overstates int8's gain. Every
    constant array of a trainable layer is replaced by noise around its value (ones stay positive:
    variances, scales)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if not layer.trainable:  # a frozen layer keeps its constants (the zoo's input scaling: 2x - 1)
            continue
        weights = []
        for array in layer.get_weights():
            if array.size > 1 and np.all(array == array.flat[0]):
                value = float(array.flat[0])
                array = (rng.uniform(0.6, 1.4, array.shape) * value if value > 0
                         else value + rng.normal(0.0, 0.2, array.shape)).astype(array.dtype)
            weights.append(array)
        layer.set_weights(weights)
    return model


def build_model(name: str):
    from types import SimpleNamespace

    import tf_keras as keras

    from edgekit.models import build

    arch, params, shape, classes, _ = MODELS[name]
    keras.utils.set_random_seed(0)
    return trained_like(build(SimpleNamespace(arch=arch, python=None, params=dict(params)), shape, classes))


def interval(rounds_a, rounds_b, p50_a, p50_b) -> tuple[str, tuple[float, float] | None]:
    """a's p50 / b's p50 with the 95% interval of the paired per-round ratios: (text, interval)."""
    from edgekit.bench.stats import ratio_interval

    rows = [{"latency_ms": {"p50": p}, "timing": {"round_p50_ms": r}} for p, r in ((p50_a, rounds_a), (p50_b, rounds_b))]
    ci = ratio_interval(rows[0], rows[1], paired=True)
    text = f"{p50_a / p50_b:.2f}x"
    return text + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""), ci


def run_model(name: str, formats: list[str], scratch: Path, args) -> None:
    import numpy as np

    model = build_model(name)
    shape = MODELS[name][2]
    calibration = np.random.default_rng(0).random((args.calibration, *shape), dtype=np.float32)
    time_model(MODELS[name][4], name, model, calibration, formats, scratch, args)


def run_recipe(path: Path, formats: list[str], scratch: Path, args) -> list[str]:
    """The zoo sweep's step: the recipe's model, trained-like, at its data's shape; its verdicts."""
    import tf_keras as keras

    from edgekit import models
    from edgekit.data import load_dataset
    from edgekit.errors import EdgekitError
    from edgekit.recipe.schema import load_recipe

    try:
        recipe = load_recipe(path)
        if not recipe.model.arch:
            raise EdgekitError("a user builder, not a zoo model")
        data = load_dataset(recipe.data, recipe.seed, args.calibration, recipe.task, recipe.outputs)
        keras.utils.set_random_seed(recipe.seed)
        model = models.build(recipe.model, data.input_shape, data.num_classes, path.parent, task=recipe.task,
                             vocab_size=data.info.get("vocab_size"))
        model = trained_like(model)
        if len(model.inputs) != 1 or data.x_calib.dtype.names:
            raise EdgekitError("several inputs")
    except Exception as exc:  # noqa: BLE001 - a recipe this sweep cannot take is listed, not fatal
        print(f"\n{path.name}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", flush=True)
        return [f"{path.stem}: skipped"]
    label = f"{path.stem} ({recipe.model.arch}, input {tuple(data.input_shape)})"
    try:
        return time_model(label, path.stem, model, data.x_calib[:args.calibration], formats, scratch, args)
    except Exception as exc:  # noqa: BLE001 - e.g. a generator, whose input is not the data's
        print(f"  skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", flush=True)
        return [f"{path.stem}: skipped, it did not convert as a classifier of its data"]


def time_model(label: str, name: str, model, calibration, formats: list[str], scratch: Path, args) -> list[str]:
    """Convert ``model`` to fp32 / int8 / int8-fast (and the unfolded pair) per format, time them
    interleaved, print p50s, ratios and peak shares; return one verdict line per format."""
    import numpy as np

    from edgekit.bench.stats import summarize
    from edgekit.bench.timing import time_rounds
    from edgekit.convert.fast import build_fast
    from edgekit.convert.fold_input import fold_input
    from edgekit.formats import FORMATS

    count = macs(model)
    verdicts = []
    folded, record = fold_input(model, calibration, int8=True)
    fold_text = (f"{', '.join(record['layers'])} folded into {record['into']}" if record.get("folded")
                 else f"nothing folded: {record.get('reason')}")
    print(f"\n{label}: {count / 1e6:.2f} M MACs; input scaling: {fold_text}; load {load()}", flush=True)
    for fmt_name in formats:
        fmt = FORMATS[fmt_name]
        convert = fmt.load_converter()
        folder = scratch / name / fmt_name
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        paths, settings = {}, {}
        for row, source, precision in (("fp32 raw", model, "fp32"), ("int8 raw", model, "int8"),
                                       ("fp32", folded, "fp32"), ("int8", folded, "int8")):
            if row.endswith(" raw") and not record.get("folded"):
                continue  # nothing folded: the raw rows are the folded ones
            paths[row] = folder / f"{row.replace(' ', '_')}{fmt.suffix}"
            settings[row] = convert(source, paths[row], precision, calibration, {})
        paths["int8-fast"] = folder / f"int8-fast{fmt.suffix}"
        made = {p: (paths[p], settings[p]) for p in ("fp32", "int8")}
        fast = build_fast(fmt, folded, paths["int8-fast"], calibration, {}, threads=args.threads,
                          log=lambda line: None, made=made)["fast"]
        converted = time.perf_counter() - started
        paths["fp32 again"] = paths["fp32"]  # a second session of the same file: the sessions' own noise
        names = [row for row in ROWS if row in paths]
        sessions = [fmt.load_runtime()(paths[row], args.threads, {}) for row in names]
        samples = list(calibration[:8])
        per = time_rounds(sessions, samples, warmup=20, runs=args.runs, rounds=args.rounds, seed=1)
        p50 = {row: summarize([t for block in rounds for t in block])["p50"] for row, rounds in zip(names, per)}
        rounds = {row: [float(np.median(block)) for block in r] for row, r in zip(names, per)}
        del sessions

        def ratio(a: str, b: str, rounds=rounds, p50=p50) -> str:  # how many times faster a is than b
            return interval(rounds[b], rounds[a], p50[b], p50[a])[0]

        def peak(row: str, p50=p50) -> str:
            rate = count / (p50[row] * 1e-3) / 1e9  # GMAC/s
            return f"{100 * rate / (args.peak_int8 if row.startswith('int8') else args.peak_fp32):.1f}%"

        print(f"  {fmt.title:<8} " + " | ".join(f"{row} {p50[row] * 1e3:.1f} us" for row in names)
              + f"   (converted in {converted:.0f} s; load {load()})")
        raw = (f"; fold: fp32 {ratio('fp32', 'fp32 raw')}, int8 {ratio('int8', 'int8 raw')}" if "fp32 raw" in p50 else "")
        print(f"  {'':<8} vs fp32: int8 {ratio('int8', 'fp32')}, int8-fast {ratio('int8-fast', 'fp32')}; "
              f"int8-fast vs int8 {ratio('int8-fast', 'int8')}{raw}")
        kept = [g["group"] for g in fast.get("groups") or [] if g.get("float")]
        pinned = len(fast.get("pinned_kernels") or {})
        choice = {"candidate": f"{len(kept)} layer group(s) float", "int8": "plain int8",
                  "kernels": f"int8, {pinned} node(s) on other kernels",
                  "fp32": "every layer float (the fp32 artifact)"}[fast["choice"]]
        if fast["choice"] == "candidate" and pinned:
            choice += f", {pinned} node(s) on other kernels"
        print(f"  {'':<8} int8-fast = {choice}; peak share (one core): fp32 {peak('fp32')} of {args.peak_fp32:g}, "
              f"int8 {peak('int8')} / int8-fast {peak('int8-fast')} of {args.peak_int8:g} GMAC/s", flush=True)
        best = min(("fp32", "int8"), key=p50.__getitem__)
        versus, ci = interval(rounds[best], rounds["int8-fast"], p50[best], p50["int8-fast"])
        # Two sessions of one file differ by a few percent beyond their paired interval (where each
        # session's buffers landed): a verdict must clear the interval and that A/A offset.
        aa = interval(rounds["fp32 again"], rounds["fp32"], p50["fp32 again"], p50["fp32"])[0]
        floor = abs(1 - p50["fp32 again"] / p50["fp32"])  # as edgekit.convert.fast's session_noise
        if fast["choice"] == best:  # the very file
            verdict = f"the same artifact as {best}"
        else:
            slower = (ci[1] if ci else p50[best] / p50["int8-fast"]) < 1.0 - floor
            verdict = "SLOWER beyond the noise" if slower else "not slower beyond the noise"
        verdict += f" (A/A: fp32 against a second session of itself {aa})"
        verdicts.append(f"{name} {fmt.title}: int8-fast vs the better of fp32 and int8 ({best}) {versus}: {verdict}")
        print(f"  {'':<8} {verdicts[-1]}", flush=True)
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--formats", default="tflite,onnx,openvino")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (the intervals' units)")
    parser.add_argument("--runs", type=int, default=360, help="timed runs per artifact, over all rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=32, help="calibration images (uniform noise)")
    parser.add_argument("--peak-fp32", type=float, default=86.0, help="one core's fp32 FMA peak, GMAC/s")
    parser.add_argument("--peak-int8", type=float, default=355.0, help="one core's int8 VNNI peak, GMAC/s")
    parser.add_argument("--recipes", type=Path, nargs="*", default=None,
                        help="sweep these recipes' zoo models instead of --models (e.g. recipes/*.yaml)")
    parser.add_argument("--scratch", type=Path, default=None, help="keep the artifacts here (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    models = [m for m in args.models.split(",") if m]
    if unknown := [m for m in models if m not in MODELS]:
        sys.exit(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    print(f"cores {os.cpu_count()}  threads {args.threads}  rounds {args.rounds}  runs {args.runs}  load {load()}")
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-fast-") as temporary:
        scratch = args.scratch or Path(temporary)
        if args.recipes:
            verdicts = [line for path in args.recipes if path.suffix == ".yaml"
                        for line in run_recipe(path, args.formats.split(","), scratch, args)]
            print("\nzoo sweep:\n  " + "\n  ".join(verdicts))
        else:
            for name in models:
                run_model(name, args.formats.split(","), scratch, args)
    print(f"\nload after {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
