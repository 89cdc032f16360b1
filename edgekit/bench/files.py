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
    #: clocks and heat (``edgekit.targets.clocks``): as the recipe's benchmark section
    wait_below_c: float | None = None
    wait_timeout_s: float = 300.0
    clock_change: float = 0.10


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
    """The model's (first) input shape at batch 1, read from the file by the format's own session."""
    return tuple(d or 1 for d in interface(fmt, path)[0].shape)


def interface(fmt, path: Path) -> list:
    """The model's inputs (``edgekit.runtimes.TensorInfo``; None for a free dimension), read from
    the file by the format's own session.

    Raises:
        InputError: the host cannot open the file.
    """
    from edgekit.runtimes import TensorInfo

    try:
        session = fmt.load_runtime()(path, 1)
        # a session that does not describe its inputs (a format of its own): one float input
        return list(getattr(session, "inputs", None) or [TensorInfo("input", np.float32, session.input_shape)])
    except Exception as exc:  # noqa: BLE001
        fix = ("a custom op needs its kernel registered in the runtime: time the file where it is (its own app, or a "
               "device profile whose runtime has it)" if "custom op" in str(exc) else
               "pass samples with --inputs FILE.npz (a device may open it)")
        raise InputError(f"{path}: cannot read its inputs here ({one_line(exc)}); {fix}") from None


def precision_of(fmt, path: Path) -> str:
    """The precision a model file stores, read from its weight tensors (the format's own weights
    reader, as the build's sparsity figures are): int8 kernels with int64 biases: int16x8; int8
    kernels with zero points, float scale tensors or int32 biases: int8; int8 kernels with
    float biases: dynamic; float16 kernels: fp16; float32: fp32. ``unknown (why)`` where it cannot
    be read: the file cannot be read, or no weight tensor is where the reader looks (an ONNX
    model keeping its weights inside If or Loop subgraphs). A partly float int8 model
    (int8-mixed) reads as int8; a runtime-side precision (OpenVINO's bf16) as the file's fp32."""
    if not fmt.weights:
        return f"unknown ({fmt.name} files have no weights reader)"
    try:
        tensors = [np.asarray(t) for t in fmt.load_weights_reader()(path)]
    except Exception as exc:  # noqa: BLE001 - the precision is a label; the timing decides the row
        return f"unknown (weights not readable: {one_line(exc, 120)})"
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
    if "float32" in kernels:
        return "fp32"
    return f"unknown ({_no_kernels_why(fmt, path)})"


def _no_kernels_why(fmt, path: Path) -> str:
    """Why no weight matrix was found: what the format's weights reader says of it (its module's
    optional ``why_no_weights(path)``: ONNX's, weights inside control-flow subgraphs), or none at all."""
    import importlib

    explain = getattr(importlib.import_module(fmt.weights_module), "why_no_weights", None)
    try:
        why = explain(path) if explain else None
    except Exception:  # noqa: BLE001 - the reason is a label
        why = None
    return why or "no weight matrix in the file"


#: what `edgekit bench` feeds an input without samples: uniform [0, 1) floats (the range of
#: edgekit's image datasets; latency hardly depends on values), and integers in a range every
#: integer input takes (an embedding of 2 rows, a flag); booleans at random
GENERATED = {"float": "random uniform [0, 1)", "integer": "random integers 0..1", "bool": "random booleans"}


def parse_shapes(texts) -> dict[str, tuple[int, ...]]:
    """``--shape`` values: ``NAME=1x3x320x320`` (or ``1x3x320x320`` for a model of one input) as
    {name or "": shape}.

    Raises:
        InputError: a value that is not NAME=DxDx... with whole numbers > 0.
    """
    out: dict[str, tuple[int, ...]] = {}
    for text in texts or ():
        name, _, dims = str(text).rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise InputError(f"--shape {text}: expected NAME=1x3x320x320 (the input's name, then its whole shape "
                             "with the batch axis, dimensions > 0 joined by x)")
        out[name.strip()] = shape
    return out


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, in its own dtype.

    Raises:
        InputError: the file cannot be read.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: np.asarray(arrays[name]) for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot read inputs: {exc}") from None


def arrays_for(arrays: dict[str, np.ndarray], inputs: list, source: str) -> dict[str, np.ndarray]:
    """The npz array of each input: the one named after it (also as ``x_<name>`` or
    ``x_test_<name>``); for a model of one input ``x``, ``x_test`` or the only array.

    Raises:
        InputError: an input has no array (the inputs and the arrays are named).
    """
    from edgekit.runtimes import plain_name

    found = {}
    for info in inputs:
        for key in (info.name, plain_name(info.name), f"x_{plain_name(info.name)}", f"x_test_{plain_name(info.name)}"):
            if key in arrays:
                found[info.name] = arrays[key]
                break
    if len(inputs) == 1 and not found:
        key = next((k for k in ("x", "x_test") if k in arrays), next(iter(arrays)) if len(arrays) == 1 else None)
        if key is not None:
            found[inputs[0].name] = arrays[key]
    missing = [i.name for i in inputs if i.name not in found]
    if missing:
        raise InputError(f"{source}: no array for input(s) {', '.join(missing)}; the model's inputs are "
                         f"{', '.join(i.name for i in inputs)}, the file holds {', '.join(arrays) or 'no arrays'}: "
                         "save one array per input, named after it (numpy.savez(path, **{name: samples}))")
    for name, array in found.items():
        if array.ndim < 1 or len(array) == 0:
            raise InputError(f"{source}: array for input {name} holds no samples (shape {list(array.shape)})")
    return found


def plan_inputs(path: Path, inputs: list, given: dict[str, tuple[int, ...]], arrays: dict[str, np.ndarray] | None,
                count: int, source: str) -> tuple[np.ndarray, dict[str, list[int]], list[dict]]:
    """The samples one file is timed on, the free dimensions fixed, and what each input got.

    Each input's shape: its own where fixed; a free dimension from ``--shape`` (``given``), else
    from its samples in the npz (``arrays``); a free batch axis is 1. Samples: the npz's (each
    input's own dtype, the first ``count``), else generated (``GENERATED``), seed 0.

    Returns:
        (samples: a plain array for one input, a structured batch for several; {input name:
        shape} of the inputs whose free dimensions were fixed (the session's ``input_shapes``);
        per input ``{"name", "dtype", "shape", "values"}`` for results.json).

    Raises:
        InputError: a free dimension fixed by neither (the dimensions and both fixes named), a
            --shape that names no input or does not fit one, samples that do not fit.
    """
    from edgekit.runtimes import join_fields

    names = [i.name for i in inputs]
    if "" in given:
        if len(inputs) != 1:
            raise InputError(f"--shape {'x'.join(map(str, given['']))}: {path.name} has {len(inputs)} inputs "
                             f"({', '.join(names)}): name one, --shape NAME=DxD...")
        given = {names[0]: given.pop("")} | given
    rng = np.random.default_rng(0)
    fixed, described, columns, unfixed = {}, [], [], []
    for info in inputs:
        shape = list(info.shape)
        array = None if arrays is None else arrays.get(info.name)
        if info.name in given:
            chosen = given[info.name]
            if len(chosen) != len(shape) or any(d is not None and d != c for d, c in zip(shape, chosen)):
                raise InputError(f"--shape {info.name}={'x'.join(map(str, chosen))}: does not fit {path.name}'s input "
                                 f"{info.name} {_shown(shape)}; keep its fixed dimensions")
            shape = list(chosen)
        elif array is not None and any(d is None for d in shape):
            sample = list(array.shape[1:])
            if len(sample) == len(shape) - 1:  # samples without the batch axis
                sample = [1, *sample]
            if len(sample) == len(shape):
                shape = [s if d is None else d for d, s in zip(shape, sample)]
        if shape and shape[0] is None:
            shape[0] = 1  # every run here is batch 1
        if any(d is None for d in shape):
            unfixed.append((info, shape))
            continue
        if list(info.shape) != shape:
            fixed[info.name] = [int(d) for d in shape]
        per_sample = tuple(shape[1:]) if shape and shape[0] == 1 else tuple(shape)
        if array is not None:
            values = array[:count]
            if int(np.prod(values.shape[1:], dtype=np.int64)) != int(np.prod(per_sample, dtype=np.int64)):
                which = "" if len(inputs) == 1 else f" {info.name}"
                raise InputError(f"{source}: samples of shape {list(values.shape[1:])} do not fit {path.name}, whose input"
                                 f"{which} is {_shown(shape)} (batch first)")
            values = values.reshape((len(values), *per_sample))
            how = f"{source}, its own dtype {values.dtype.name}"
        else:
            values, how = _generated(info.dtype, (count, *per_sample), rng)
        columns.append((info.name, values))
        described.append({"name": info.name, "dtype": info.dtype.name, "shape": [int(d) for d in shape], "values": how})
    if unfixed:
        dims = "; ".join(f"{i.name} {_shown(shape)} (axis {', '.join(str(k) for k, d in enumerate(shape) if d is None)})"
                         for i, shape in unfixed)
        example = " ".join(f"--shape {i.name}={'x'.join(str(d) if d is not None else 'N' for d in shape)}" for i, shape in unfixed)
        raise InputError(f"{path.name}: free dimensions: {dims}; fix them with {example} (N: your sizes), "
                         "or give samples with --inputs FILE.npz (one array per input, named after it)")
    lengths = {len(v) for _, v in columns}
    if len(lengths) > 1:
        raise InputError(f"{source}: the inputs' arrays hold different numbers of samples "
                         f"({', '.join(f'{n} {len(v)}' for n, v in columns)}); expected as many for each")
    if len(columns) == 1 and not np.issubdtype(columns[0][1].dtype, np.integer):
        samples = columns[0][1].astype(np.float32)  # one float input: a plain array, as a build's
    else:  # several inputs (or one integer input, kept exact): a structured batch, one field each
        samples = join_fields(columns)
    return samples, fixed, described


def _generated(dtype: np.dtype, shape: tuple, rng) -> tuple[np.ndarray, str]:
    if np.issubdtype(dtype, np.bool_):
        return rng.integers(0, 2, shape).astype(np.bool_), GENERATED["bool"]
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, shape).astype(dtype), GENERATED["integer"]
    return rng.random(shape, dtype=np.float32), GENERATED["float"]


def _shown(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def benchmark_files(paths: list[Path], target_names: list[str], spec: BenchSpec, inputs_file: Path | None,
                    dirs: list[Path], log: Callable[[str], None] = print,
                    shapes: list[str] | None = None) -> tuple[dict, dict[str, list[float]]]:
    """Time every file on every target; return results (the build's layout) and raw latencies.

    ``shapes`` (``--shape NAME=1x3x320x320``) fix free dimensions, as the samples of
    ``inputs_file`` (one array per input name) do; see ``plan_inputs``."""
    from edgekit import environment
    from edgekit.evaluate.stage import io_record
    from edgekit.evaluate.weights import gzip_size
    from edgekit.report import results as results_file
    from edgekit.report.rows import add_speedups
    from edgekit.targets import resolve
    from edgekit.variant import Variant

    started = time.perf_counter()
    formats = [format_of(path) for path in paths]
    given_shapes = parse_shapes(shapes)
    targets = resolve(list(dict.fromkeys(target_names)), dirs, log)
    arrays = read_arrays(inputs_file) if inputs_file is not None else None
    if arrays is not None and not arrays:
        raise InputError(f"{inputs_file}: holds no arrays; save one per model input (numpy.savez(path, **{{name: samples}}))")
    variants, sample_sets, planned, used = [], [], {}, set()
    for path, fmt in zip(paths, formats):
        try:
            inputs = interface(fmt, path)
        except InputError as exc:
            if arrays is None and len(paths) == 1:
                raise
            if arrays is None:  # one of several files: it fails its own row, the others are timed
                variant = Variant(format=fmt.name, precision=precision_of(fmt, path), model=path.stem, path=path,
                                  status="failed", reason=f"runtime failed: {exc.message}")
                variants.append(variant)
                sample_sets.append(None)
                continue
            inputs = None  # the host cannot open it; a device may, with the samples as given
        fixed: dict[str, list[int]] = {}
        if inputs is None:
            samples = _as_given(arrays, spec.inputs)
        else:
            own = arrays_for(arrays, inputs, str(inputs_file)) if arrays is not None else None
            # each file takes the --shape values of its own inputs' names (an unnamed one: a file of one input)
            mine = {k: v for k, v in given_shapes.items() if k in {i.name for i in inputs} or (k == "" and len(inputs) == 1)}
            used.update(mine)
            samples, fixed, planned[path.name] = plan_inputs(path, inputs, mine, own, spec.inputs, str(inputs_file))
            for record in planned[path.name]:
                log(f"[bench] {path.name}: input {record['name']} {record['dtype']} {record['shape']}: {record['values']}")
        variant = Variant(format=fmt.name, precision=precision_of(fmt, path), model=path.stem, path=path)
        variant.gzip_bytes = gzip_size(variant.files)
        options = {"input_shapes": fixed} if fixed else {}
        if any(target.uses_host_session for target in targets.values()):
            try:
                variant.session = fmt.load_runtime()(path, spec.threads, options)
                variant.runtime, variant.settings = variant.session.runtime, dict(variant.session.settings)
                variant.io = io_record(variant.session)
            except Exception as exc:  # noqa: BLE001 - the file may still run on a device
                variant.reason = f"runtime failed: {one_line(exc)}"
        if fixed:  # recorded in the row, and sent to devices with the job (the session's option)
            variant.settings["input_shapes"] = fixed
        variants.append(variant)
        sample_sets.append(list(samples))
    unused = [k for k in given_shapes if k not in used]
    if unused:
        from edgekit.errors import did_you_mean

        known = sorted({r["name"] for records in planned.values() for r in records})
        name = unused[0]
        what = (f"--shape {name}=...: no file has an input named {name!r}{did_you_mean(name, known)}" if name else
                f"--shape {'x'.join(map(str, given_shapes[name]))}: without a name it fits files of one input only")
        raise InputError(f"{what}; the files' inputs: {', '.join(known)}")
    rows, latencies, faults = [], {}, set()
    from edgekit.locks import Hold, holding

    for name, target in targets.items():
        # This machine's timings alone on its CPU; a device's (or a pool member's) one job at a
        # time, each holding its device (edgekit.bench.fleet), as in a build.
        if not target.times_here:
            _bench_target(name, target, paths, variants, sample_sets, spec, log, rows, latencies, faults)
            continue
        with holding(Hold(task=f"bench {name}", kind="bench", mode="exclusive"), log):
            _bench_target(name, target, paths, variants, sample_sets, spec, log, rows, latencies, faults)
    _name_generated_integers(rows, planned, faults)
    add_speedups(rows)
    source = str(inputs_file) if inputs_file else f"generated, seed 0: floats {GENERATED['float']}, integers {GENERATED['integer']}"
    head = results_file.header(
        {"name": "bench", "path": None, "sha256": None}, environment.collect(), command="bench", primary_metric="metric",
        inputs={"source": source, "count": spec.inputs, "files": planned, "shapes": {k: list(v) for k, v in given_shapes.items()}},
        benchmark=vars(spec),
    )
    results = results_file.assemble(head, rows, targets={name: target.environment() for name, target in targets.items()},
                                    build_seconds=round(time.perf_counter() - started, 1))
    return results, latencies


def _name_generated_integers(rows: list[dict], planned: dict[str, list[dict]], faults: set[str]) -> None:
    """A failed row whose integer inputs were generated says so, with the fix: such an input is
    often a setting, not data (silero-vad's ``sr`` must be 16000 or 8000, and fails deep inside
    an If node on the generated 0 or 1). Not a row whose device failed (``faults``: unreachable,
    no key, timed out): its inputs never ran."""
    for row in rows:
        records = planned.get(row["id"].rsplit("@", 1)[0]) or []
        generated = [r["name"] for r in records if r["values"] == GENERATED["integer"]]
        if row["status"] == "failed" and generated and row.get("reason") and row["id"] not in faults:
            row["reason"] += (f"; its integer input(s) {', '.join(generated)} were {GENERATED['integer']}: give the values "
                              "the model expects with --inputs FILE.npz (one array per input, named after it)")


def _as_given(arrays: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Samples for a file the host cannot open: the npz's one array (x, x_test or the only one) as
    float32, or all of its arrays, each its own input."""
    from edgekit.runtimes import join_fields

    name = next((n for n in ("x", "x_test") if n in arrays), next(iter(arrays)) if len(arrays) == 1 else None)
    if name is not None:
        return np.asarray(arrays[name][:count], dtype=np.float32)
    try:
        return join_fields([(n, a[:count]) for n, a in arrays.items()])
    except ValueError as exc:
        raise InputError(f"the --inputs arrays do not hold one sample per entry each ({exc})") from None


def _bench_target(name, target, paths, variants, sample_sets, spec, log, rows: list, latencies: dict,
                  faults: set) -> None:
    """One target's rows of `edgekit bench`, appended to ``rows`` (raw latencies to ``latencies``,
    the ids of rows whose device failed to ``faults``)."""
    from edgekit.report.rows import make_row
    from edgekit.targets import Measurement

    measured: dict[int, Measurement] = {}
    ready = [i for i, v in enumerate(variants) if target.supports(v) and sample_sets[i] is not None
             and not (target.uses_host_session and v.session is None)]
    if getattr(target, "interleaves", False) and ready:
        log(f"[bench] {name}: {len(ready)} file(s) in {spec.rounds} interleaved round(s)")
        chosen, sets = [variants[i] for i in ready], [sample_sets[i] for i in ready]
        if target.times_here:
            group = target.measure_all(chosen, spec, None, None, sample_sets=sets)
        else:
            from edgekit.bench import fleet

            group, _ = fleet.run(target, chosen, spec, None, None, 0, None, log, sets)
        measured.update(zip(ready, group))
    for i, (path, variant) in enumerate(zip(paths, variants)):
        row_id = f"{path.name}@{name}"
        if sample_sets[i] is None:  # a file no session here could open: no samples to send anywhere
            m = Measurement("failed", variant.reason)
        elif not target.supports(variant):
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
        if m.fault:
            faults.add(row_id)
        row = make_row(row_id, variant, name, m, variant, spec.unstable_spread, getattr(spec, "clock_change", None),
                       again="edgekit bench")
        row.update(metrics={}, delta={}, parity={},
                   input_shape=_first_shape(variant, sample_sets[i][0]) if sample_sets[i] else None)
        if target.probes_here and m.status == "ok":
            row.update(_probe(variant, row_id, spec, sample_sets[i], log))
        elif m.status == "ok" and getattr(m, "probe", None) is not None:  # a device probed it itself
            from edgekit.bench import profiles

            row.update({k: v for k, v in profiles.attach(row_id, m.probe, None).items()
                        if v is not None or k != "profile_error"})
        rows.append(row)


def _first_shape(variant, sample) -> list[int]:
    """The (first) input's sample shape, without the batch axis."""
    names = getattr(getattr(sample, "dtype", None), "names", None)
    return [int(d) for d in (sample.dtype[names[0]].shape if names else np.shape(sample))]


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
