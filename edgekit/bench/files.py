"""``edgekit bench``: time existing model files, without a recipe; the format table's suffixes
say which format each file is.

Every file is timed on every target with the same loop and the same inputs as a build:
random samples of the model's own input shape (read from the file), or samples from an .npz
file. Rows and the table are the build's, without metrics (there are no labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekit.errors import InputError, one_line
from edgekit.formats import FORMATS, format_for_suffix


@dataclass
class BenchSpec:
    """The timing loop's settings (the recipe's ``benchmark:`` section)."""

    warmup: int = 10
    runs: int = 100
    min_time_s: float = 0.0
    threads: int = 1
    inputs: int = 16
    rounds: int = 5
    unstable_spread: float = 0.10
    #: per-op profile and peak memory of every row, each file probed in a fresh process after
    #: the timed rounds (``edgekit.bench.profiles``; an ssh device probes its own)
    profile: bool = True


def format_of(path: Path):
    """The format-table row for a file, by suffix.

    Raises:
        InputError: a missing file, an unknown suffix, or an IR without its .bin.
    """
    fmt = format_for_suffix(path.suffix)
    if fmt is None:
        raise InputError(f"{path}: unknown model file type {path.suffix or '(none)'!r}; expected one of "
                         f"{', '.join(f.suffix for f in FORMATS.values())} ({', '.join(FORMATS)})")
    for file in fmt.files(path):
        if not file.is_file():
            raise InputError(f"{file}: file not found" + (f" (it belongs to {path.name})" if file != path else ""))
    return fmt


def input_shape(fmt, path: Path) -> tuple[int, ...]:
    """The model's input shape at batch 1, read from the file by the format's own session."""
    try:
        return tuple(fmt.load_runtime()(path, 1).input_shape)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read its input shape here ({one_line(exc)}); "
                         "pass samples with --inputs FILE.npz") from None


def precision_of(fmt, path: Path) -> str:
    """The precision a model file stores, read from its weight tensors (the format's own weights
    reader, as the build's sparsity figures are): int8 kernels with int64 biases: int16x8; int8
    kernels with zero points, float scale tensors or int32 biases: int8; int8 kernels with
    float biases: dynamic; float16 kernels: fp16; float32: fp32. "-" where the file cannot be read. A partly
    float int8 model (int8-mixed) reads as int8; a runtime-side precision (OpenVINO's bf16) as
    the file's fp32."""
    if not fmt.weights:
        return "-"
    try:
        tensors = [np.asarray(t) for t in fmt.load_weights_reader()(path)]
    except Exception:  # noqa: BLE001 - the precision is a label; the timing decides the row
        return "-"
    kernels = {t.dtype.name for t in tensors if t.ndim >= 2}
    vectors = {t.dtype.name for t in tensors if t.ndim < 2}
    if kernels & {"int8", "uint8"}:
        if "int64" in vectors and "float32" not in kernels | vectors:
            return "int16x8"  # int16 activations take int64 biases
        # per-channel scale tensors (shape [channels, 1, ...]) or zero points: quantized activations
        scales = any(t.ndim >= 2 and t.dtype.kind == "f" and all(d == 1 for d in t.shape[1:]) for t in tensors)
        if scales or vectors & {"int8", "uint8"}:
            return "int8"
        # float biases beside int8 kernels: weights-only quantization; else int32 biases
        return "dynamic" if "float32" in vectors else "int8"
    if "float16" in kernels:
        return "fp16"
    if "bfloat16" in kernels:
        return "bf16"
    return "fp32" if "float32" in kernels else "-"


def load_inputs(path: Path, count: int) -> np.ndarray:
    """Samples from an .npz file: its array ``x`` (or ``x_test``, or its only array), first ``count``.

    Raises:
        InputError: the file cannot be read or holds no usable array.
    """
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            name = next((n for n in ("x", "x_test") if n in names), names[0] if len(names) == 1 else None)
            if name is None:
                raise InputError(f"{path}: expected an array named x (or x_test, or a single array), found: {', '.join(names) or 'none'}")
            x = np.asarray(arrays[name], dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read inputs: {exc}") from None
    if x.ndim < 1 or len(x) == 0:
        raise InputError(f"{path}: array {name} holds no samples (shape {list(x.shape)})")
    return x[:count]


def fit_inputs(samples: np.ndarray, shape: tuple[int, ...], path: Path, source: str) -> np.ndarray:
    """Check that samples fit a model's input shape (batch axis first)."""
    if tuple(samples.shape[1:]) != tuple(shape[1:]) and samples[0].size != int(np.prod(shape[1:])):
        raise InputError(f"{source}: samples of shape {list(samples.shape[1:])} do not fit {path.name}, "
                         f"whose input is {list(shape)} (batch first)")
    return samples.reshape((len(samples), *shape[1:]))


def benchmark_files(paths: list[Path], target_names: list[str], spec: BenchSpec, inputs_file: Path | None,
                    dirs: list[Path], log: Callable[[str], None] = print) -> tuple[dict, dict[str, list[float]]]:
    """Time every file on every target; return results (the build's layout) and raw latencies."""
    from edgekit import environment
    from edgekit.report import results as results_file
    from edgekit.report.rows import add_speedups
    from edgekit.evaluate.variant import Variant
    from edgekit.evaluate.weights import gzip_size
    from edgekit.targets import resolve

    started = time.perf_counter()
    formats = [format_of(path) for path in paths]
    targets = resolve(list(dict.fromkeys(target_names)), dirs, log)
    given = load_inputs(inputs_file, spec.inputs) if inputs_file is not None else None
    variants, sample_sets = [], []
    for path, fmt in zip(paths, formats):
        if given is not None:
            try:
                shape = input_shape(fmt, path)
            except InputError:
                shape = None  # the host cannot open it; a device may, with the samples as given
            samples = fit_inputs(given, shape, path, str(inputs_file)) if shape else given
        else:
            shape = input_shape(fmt, path)
            # Uniform [0, 1): the range of edgekit's image datasets; latency hardly depends on values.
            samples = np.random.default_rng(0).random((spec.inputs, *shape[1:]), dtype=np.float32)
        variant = Variant(format=fmt.name, precision=precision_of(fmt, path), model=path.stem, path=path)
        variant.gzip_bytes = gzip_size(variant.files)
        if any(target.uses_host_session for target in targets.values()):
            try:
                variant.session = fmt.load_runtime()(path, spec.threads, {})
                variant.runtime, variant.settings = variant.session.runtime, dict(variant.session.settings)
            except Exception as exc:  # noqa: BLE001 - the file may still run on a device
                variant.reason = f"runtime failed: {one_line(exc)}"
        variants.append(variant)
        sample_sets.append(list(samples))
    rows, latencies = [], {}
    from edgekit.locks import Hold, holding

    for name, target in targets.items():
        # This machine's timings alone on its CPU, a device's one task at a time, as in a build.
        hold = (Hold(task=f"bench {name}", kind="bench", mode="exclusive") if target.times_here
                else Hold(task=f"bench {name}", kind="bench", device=name))
        with holding(hold, log):
            _bench_target(name, target, paths, variants, sample_sets, spec, log, rows, latencies)
    add_speedups(rows)
    head = results_file.header(
        {"name": "bench", "path": None, "sha256": None}, environment.collect(), command="bench", primary_metric="metric",
        inputs={"source": str(inputs_file) if inputs_file else "random uniform [0, 1), seed 0", "count": spec.inputs},
        benchmark=vars(spec),
    )
    results = results_file.assemble(head, rows, targets={name: target.environment() for name, target in targets.items()},
                                    build_seconds=round(time.perf_counter() - started, 1))
    return results, latencies


def _bench_target(name, target, paths, variants, sample_sets, spec, log, rows: list, latencies: dict) -> None:
    """One target's rows of `edgekit bench`, appended to ``rows`` (raw latencies to ``latencies``)."""
    from edgekit.report.rows import make_row
    from edgekit.targets import Measurement

    measured: dict[int, Measurement] = {}
    ready = [i for i, v in enumerate(variants) if target.supports(v) and not (target.uses_host_session and v.session is None)]
    if getattr(target, "interleaves", False) and ready:
        log(f"[bench] {name}: {len(ready)} file(s) in {spec.rounds} interleaved round(s)")
        group = target.measure_all([variants[i] for i in ready], spec, None, None, sample_sets=[sample_sets[i] for i in ready])
        measured.update(zip(ready, group))
    for i, (path, variant) in enumerate(zip(paths, variants)):
        row_id = f"{path.name}@{name}"
        if not target.supports(variant):
            m = Measurement("skipped", target.unsupported_reason(variant))
        elif target.uses_host_session and variant.session is None:
            m = Measurement("failed", variant.reason)
        elif i in measured:
            m = measured[i]
        else:
            log(f"[bench] {row_id}")
            try:
                m = target.measure(variant, spec, sample_sets[i], None)
            except Exception as exc:  # noqa: BLE001
                m = Measurement("failed", f"benchmark failed: {one_line(exc)}")
        if m.latencies_ms:
            latencies[row_id] = m.latencies_ms
        row = make_row(row_id, variant, name, m, variant, spec.unstable_spread, again="edgekit bench")
        row.update(metrics={}, delta={}, parity={}, input_shape=[int(d) for d in sample_sets[i][0].shape])
        if getattr(target, "kind", "") == "cpu" and m.status == "ok":
            row.update(_probe(variant, row_id, spec, sample_sets[i], log))
        elif m.status == "ok" and getattr(m, "probe", None) is not None:  # a device probed it itself
            from edgekit.bench import profiles

            row.update({k: v for k, v in profiles.attach(row_id, m.probe, None).items()
                        if v is not None or k != "profile_error"})
        rows.append(row)


def _probe(variant, row_id: str, spec: BenchSpec, samples, log) -> dict:
    """A file's per-op profile and peak memory (``profile``, ``memory``, ``profile_error``), from
    a fresh process after the timed rounds; nothing when ``spec.profile`` is off."""
    from types import SimpleNamespace

    from edgekit.bench import profiles
    from edgekit.formats import FORMATS

    # the settings a recipe would give the probe: the file's format at its default options
    recipe = SimpleNamespace(benchmark=SimpleNamespace(profile=spec.profile, threads=spec.threads),
                             export=SimpleNamespace(**{name: fmt.options() for name, fmt in FORMATS.items()}),
                             model=None, path=None)
    found = profiles.profile_rows([variant], [row_id], recipe, samples, None, None, log).get(row_id)
    if not found:
        return {}
    return {key: value for key, value in found.items() if value is not None or key != "profile_error"}
