"""int8-fast: int8 where this CPU runs it faster, float where it does not, chosen by measurement.

Plain int8 is not always faster than fp32: on MobileNetV2 alpha 0.35 at 96x96 XNNPACK's int8
depthwise convolutions and its int8 convolutions over few channels take 1.7-3.4x their fp32
time here (the first 3x3 convolution on 3 channels: 85 vs 25 us), while the later 1x1
convolutions are 1.5-2x faster, so the whole int8 model ran 0.8-0.9x of fp32. For each format:

1. The fp32 and the plain int8 artifact (with the recipe's ``keep_float``) are converted, and
   every op of both is timed on its own in the format's runtime, in interleaved rounds (the
   runtime module's ``op_times``: LiteRT single-op models, OpenVINO's and onnxruntime's own
   per-node counters). Ops are mapped to Keras layers by their scopes, and the layers to
   *groups*: a layer with weights and the normalization and activation layers that follow it
   alone (one fused kernel in every runtime).
   Where the format can ask its runtime for other int8 kernels node by node (the converter
   module's ``kernel_alternatives`` and ``pin_kernels``: OpenVINO on a CPU with AMX, whose AMX
   int8 convolutions over few channels are slower than its AVX-512 VNNI ones), copies of plain
   int8 with every such node pinned to each alternative are timed in the same rounds, and a node
   keeps the alternative that is faster in every round by at least ``MIN_GAIN_US``
   (``choose_kernels``); the result is the ``kernels`` mix, and the int8 times below are its.
2. A group is slower in int8 when its int8 time exceeds its fp32 time in every round (the
   rounds agree; noise never makes a group float) by at least ``MIN_GAIN_US``.
3. The candidate keeps those groups float (each format's own mechanism, as ``keep_float``;
   the other layers on the kernels chosen above); the transitions it adds (QUANTIZE/DEQUANTIZE,
   QDQ pairs, FakeQuantize) cost time of their own, so the mixes (the candidate, the kernels),
   plain int8 and fp32 are timed whole, interleaved, in ``ROUNDS`` rounds, with plain int8
   in a second session beside them (what two sessions of one file differ by: 0-12% here,
   often beyond their paired interval). The fastest mix is kept only
   when it is faster than plain int8 within the 95% interval of the paired ratio and past that
   session noise; where fp32 is faster still, by the same test, the artifact is the fp32 one
   (no int8 layer pays off on this CPU), and the note says so.
4. The artifact kept is scored on the validation split: a drop past ``quantize.max_drop``
   (or, without one, past plain int8's own drop by more than one validation sample) sends the
   choice back to plain int8.

``settings["fast"]`` records every group's fp32 and int8 times (median and range over the
rounds, us), which stayed float and why, each pinnable node's kernels and times and which were
pinned, the whole-model p50s and ratios with intervals, and the choice. Measured on this
machine: its CPU is part of the cache key.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert import keras_layer_names, node_layers, outer_names, traced
from edgekit.errors import one_line

#: interleaved rounds the three whole artifacts are timed in, and runs per round
ROUNDS = 7
RUNS_PER_ROUND = 40
#: and at least this long per artifact and round (s): 40 runs of a 15 us model take 0.6 ms, too
#: short for a 2-5% difference between fp32 and int8 to clear the rounds' spread
MIN_BLOCK_S = 0.02
#: the second session of plain int8 in the whole-model timing (its A/A pair)
AGAIN = "int8 again"
#: a group goes float only where int8 costs it at least this much more (us per inference)
MIN_GAIN_US = 0.5
#: samples the op times and the whole-model timings run on
SAMPLES = 4
#: layer classes that fuse into the layer with weights before them
_TAIL = ("BatchNormalization", "ReLU", "Activation", "LeakyReLU", "PReLU", "ELU", "Softmax")


def key_parts(recipe) -> dict:
    """What decides an int8-fast artifact besides the model and the format: the budget, the
    split it is scored on, the threads it is timed at and the CPU it is timed on."""
    from edgekit.data import VALIDATION_CAP
    from edgekit.targets.runner import cpu_info

    return {"max_drop": recipe.quantize.max_drop, "validation_cap": VALIDATION_CAP, "task": recipe.task,
            "threads": recipe.benchmark.threads, "cpu": cpu_info()[0]}


def build_fast(fmt, exported, path: Path, calibration: np.ndarray, options: dict, *, keep_float=(), max_drop=None,
               data=None, task: str = "classification", threads: int = 1,
               log: Callable[[str], None] = print, made: dict | None = None) -> dict:
    """Write the int8-fast artifact of ``exported`` for format ``fmt`` at ``path``.

    Args:
        fmt: the format's row (``edgekit.formats.Format``).
        exported: the Keras model the artifacts are made from.
        path: where the artifact goes (its companions beside it).
        calibration: the int8 calibration samples (as for int8).
        options: the format's recipe options.
        keep_float: the recipe's own ``quantize.keep_float`` layers, float in every candidate.
        max_drop: the accuracy budget on the validation split (None: plain int8's own drop).
        data: the build's dataset (its validation split scores the choice); None: not scored.
        task: the recipe's task.
        threads: the runtime's threads, as the rows are timed.
        log: where progress lines go.
        made: ``{"fp32": (path, settings), "int8": (path, settings)}`` already converted from
            ``exported`` (the same options and keep_float), to time instead of converting again.

    Returns:
        The converter settings of the artifact kept, plus ``fast`` (see the module docstring).
    """
    path = Path(path)
    convert = fmt.load_converter()
    runtime = importlib.import_module(fmt.runtime_module)
    base_keep = tuple(keep_float)
    samples = np.asarray(calibration[:SAMPLES], np.float32)
    record: dict[str, Any] = {"threads": threads, "min_gain_us": MIN_GAIN_US}
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.fast-", dir=path.parent) as tmp:
        folder = Path(tmp)
        made = dict(made or {})
        if "fp32" not in made:
            made["fp32"] = (folder / f"fp32{fmt.suffix}", convert(exported, folder / f"fp32{fmt.suffix}", "fp32",
                                                                  calibration, options))
        if "int8" not in made:
            made["int8"] = (folder / f"int8{fmt.suffix}", convert(exported, folder / f"int8{fmt.suffix}", "int8",
                                                                  calibration, options,
                                                                  **({"keep_float": base_keep} if base_keep else {})))
        int8_path = made["int8"][0]
        op_times = getattr(runtime, "op_times", None)
        # a format that can ask its runtime for other int8 kernels node by node (OpenVINO's AMX
        # ones are slower at small widths): copies of plain int8 with every such node pinned
        converter = importlib.import_module(fmt.converter_module)
        alternatives = {}
        if op_times is not None and hasattr(converter, "kernel_alternatives"):
            try:
                alternatives = converter.kernel_alternatives(int8_path, folder)
            except Exception as exc:  # noqa: BLE001 - the runtime's own kernels are still timed
                record["kernels_from"] = f"no other kernels could be asked for: {one_line(exc)}"
        slower: list[dict] = []
        pins: dict[str, str] = {}
        if op_times is None:
            record["groups_from"] = f"{fmt.runtime_module} has no op_times: no op is timed on its own"
        else:
            log(f"[convert] {path.name}: int8-fast: timing every op at fp32 and int8"
                + (f", and int8 on {', '.join(alternatives)} kernels" if alternatives else ""))
            try:
                measured = op_times([made["fp32"][0], int8_path, *alternatives.values()], threads, samples)
                int8_ops = measured[1]["ops"]
                if alternatives:
                    pins, record["kernels"], int8_ops = choose_kernels(
                        int8_ops, {choice: m["ops"] for choice, m in zip(alternatives, measured[2:])})
                table, unattributed = compare_groups(exported, measured[0]["ops"], int8_ops)
                record.update(op_times_how=measured[0].get("how"), groups=table, unattributed_us=unattributed)
                slower = [g for g in table if g["float"]]
            except Exception as exc:  # noqa: BLE001 - without op times, plain int8 and fp32 are still compared
                record["groups_from"] = f"the ops could not be timed one by one: {one_line(exc)}"
        if pins:
            pinned = folder / f"kernels{fmt.suffix}"
            converter.pin_kernels(int8_path, pinned, pins)
            made["kernels"] = (pinned, made["int8"][1])
        groups = layer_groups(exported)
        floated = [name for g in slower for name in groups.members(g["group"]) if name not in base_keep]
        if floated:
            candidate = folder / f"candidate{fmt.suffix}"
            made["candidate"] = (candidate, convert(exported, candidate, "int8", calibration, options,
                                                    keep_float=(*base_keep, *floated)))
            if pins:  # the layers left int8 keep their faster kernels
                converter.pin_kernels(candidate, candidate, pins)
        log(f"[convert] {path.name}: int8-fast: {len(slower)} layer group(s) slower in int8; timing "
            f"{', '.join(made)} whole")
        timing = _time_whole(fmt, {name: p for name, (p, _) in made.items()}, threads, options, samples)
        record["whole"] = timing
        choice, why = _choose(timing)
        choice, why = _scored(fmt, exported, made, choice, why, record, max_drop, data, task, threads, options)
        record.update(choice=choice, why=why, all_float=choice == "fp32",
                      kept_float=[g["group"] for g in slower] if choice == "candidate" else [],
                      pinned_kernels=pins if choice in ("kernels", "candidate") else {})
        chosen_path, settings = made[choice]
        for source, target in zip(fmt.files(chosen_path), fmt.files(path)):
            shutil.copyfile(source, target.with_name(target.name + ".tmp"))
            Path(target.with_name(target.name + ".tmp")).replace(target)
    out = dict(settings)
    if choice == "candidate":
        out["kept_float"] = [*base_keep, *floated]
    out["fast"] = record
    return out


class _Groups:
    """Keras layer -> its group (the layer with weights it fuses into), and the group's members."""

    def __init__(self, head: dict[str, str]):
        self.head = head

    def of(self, layer: str) -> str:
        return self.head.get(layer, layer)

    def members(self, group: str) -> list[str]:
        return [layer for layer, head in self.head.items() if head == group] or [group]


def layer_groups(model) -> _Groups:
    """Each layer's group: a normalization or activation layer that alone reads a layer which
    only it reads joins that layer's group (the runtimes fuse them into one kernel); every other
    layer heads its own. Nested models are walked too."""
    from edgekit.convert.fold_input import layer_graph

    head: dict[str, str] = {name: name for name in keras_layer_names(model)}
    stack = [model]
    while stack:
        current = stack.pop()
        layers = {layer.name: layer for layer in getattr(current, "layers", [])}
        stack += [layer for layer in layers.values() if hasattr(layer, "layers") and hasattr(layer, "inputs")]
        graph = layer_graph(current)
        if graph is None:
            continue
        readers: dict[str, int] = {}
        for reads in graph["reads"].values():
            for source in reads:
                readers[source] = readers.get(source, 0) + 1
        for name in [layer.name for layer in getattr(current, "layers", [])]:
            reads = graph["reads"].get(name) or []
            layer = layers.get(name)
            if layer is None or type(layer).__name__ not in _TAIL or len(reads) != 1 or readers.get(reads[0]) != 1:
                continue
            if reads[0] in head:
                head[name] = head[reads[0]]
    return _Groups(head)


def compare_groups(model, fp32_ops: list[dict], int8_ops: list[dict]) -> tuple[list[dict], dict]:
    """Per layer group, its fp32 and int8 times per round (the ops of ``op_times``), and whether
    int8 is slower in every round by at least MIN_GAIN_US. Returns (groups in model order,
    the times of ops no layer owns: input and output quantization, transitions)."""
    groups = layer_groups(model)
    names = keras_layer_names(model)
    order = {name: i for i, name in enumerate(names)}
    outer = outer_names(model)

    def per_group(ops: list[dict]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        scopes = traced(names, [n for op in ops for n in op.get("names") or [op["name"]]])
        out: dict[str, np.ndarray] = {}
        rounds = max((len(op["us"]) for op in ops), default=0)
        loose = np.zeros(rounds)
        for op in ops:
            if not op.get("us"):
                continue
            owners = node_layers(";".join(op.get("names") or [op["name"]]), scopes, outer)
            us = np.asarray(op["us"], np.float64)
            if not owners:
                loose = loose + us
                continue
            group = groups.of(min(owners, key=lambda layer: order.get(layer, len(order))))
            out[group] = out.get(group, 0) + us
        return out, loose

    fp32, loose32 = per_group(fp32_ops)
    int8, loose8 = per_group(int8_ops)
    table = []
    for group in sorted(set(fp32) & set(int8), key=lambda g: order.get(g, len(order))):
        f, q = fp32[group], int8[group]
        diff = q - f
        slower = bool(len(diff) and np.all(diff > 0) and float(np.median(diff)) >= MIN_GAIN_US)
        table.append({"group": group, "fp32_us": _spread(f), "int8_us": _spread(q), "float": slower,
                      "why": (f"int8 {np.median(q):.1f} us vs fp32 {np.median(f):.1f} us, slower in all {len(diff)} rounds"
                              if slower else None)})
    unattributed = {"fp32_us": _spread(loose32), "int8_us": _spread(loose8)}
    return table, unattributed


def choose_kernels(default_ops: list[dict], alternatives: dict[str, list[dict]]) -> tuple[dict, list[dict], list[dict]]:
    """Per node, the runtime's default int8 kernel against each alternative's (the same IR with
    the node pinned to other kernels, timed in the same interleaved rounds): a node is pinned to
    the alternative that is faster in every round by at least MIN_GAIN_US (the fastest such one
    by median). Returns (pins {node: choice}, a row per node where some alternative ran another
    kernel, the int8 ops with each pinned node's times from its alternative)."""
    by_choice = {choice: {op["name"]: op for op in ops} for choice, ops in alternatives.items()}
    pins, table, merged = {}, [], []
    for op in default_ops:
        mine = np.asarray(op.get("us") or [], np.float64)
        others = {choice: ops[op["name"]] for choice, ops in by_choice.items()
                  if op["name"] in ops and ops[op["name"]].get("exec_type") != op.get("exec_type")}
        best = None
        for choice, other in others.items():
            theirs = np.asarray(other.get("us") or [], np.float64)
            gain = mine - theirs if len(theirs) == len(mine) else np.zeros(0)
            if len(gain) and np.all(gain > 0) and float(np.median(gain)) >= MIN_GAIN_US and (
                    best is None or np.median(theirs) < np.median(by_choice[best][op["name"]]["us"])):
                best = choice
        if others:
            table.append({"node": op["name"], "default": op.get("exec_type"), "default_us": _spread(mine),
                          "alternatives": {choice: {"exec_type": other.get("exec_type"), "us": _spread(other["us"])}
                                           for choice, other in others.items()},
                          "pinned": best})
        if best is not None:
            pins[op["name"]] = best
        merged.append(op if best is None else by_choice[best][op["name"]])
    return pins, table, merged


def _spread(values: np.ndarray) -> list[float]:
    """[median, low, high] over the rounds, us."""
    values = np.asarray(values, np.float64)
    if not values.size:
        return [0.0, 0.0, 0.0]
    return [round(float(np.median(values)), 2), round(float(values.min()), 2), round(float(values.max()), 2)]


def _time_whole(fmt, paths: dict[str, Path], threads: int, options: dict, samples: np.ndarray) -> dict:
    """The artifacts timed whole in the timed rows' sessions and loop, ROUNDS interleaved rounds:
    each one's p50 and round p50s (ms), and its ratio to plain int8 with a 95% interval."""
    from edgekit.bench.stats import ratio_interval, summarize, summarize_rounds
    from edgekit.bench.timing import time_rounds

    # plain int8 twice, in two sessions: what two sessions of one file differ by (a few percent
    # beyond their paired interval on this machine: where each session's buffers landed) is a
    # floor under every verdict below
    names = [*paths, AGAIN]
    sessions = [fmt.load_runtime()(paths.get(name, paths["int8"]), threads, options) for name in names]
    rounds = time_rounds(sessions, list(samples), warmup=10, runs=ROUNDS * RUNS_PER_ROUND,
                         min_time_s=ROUNDS * MIN_BLOCK_S, rounds=ROUNDS)
    rows = {}
    for name, per_round in zip(names, rounds):
        flat = [t for block in per_round for t in block]
        p50 = summarize(flat)["p50"]
        rows[name] = {"latency_ms": {"p50": p50}, "timing": summarize_rounds(p50, per_round)}
    # the A/A pair's own offset (its p50 ratio's distance from 1), not its interval: the paired
    # intervals below already carry the rounds' spread
    aa = rows["int8"]["latency_ms"]["p50"] / rows[AGAIN]["latency_ms"]["p50"]
    out = {"session_noise": round(abs(1 - aa), 4), "session_aa": round(aa, 4)}
    for name in paths:
        entry = {"p50_ms": round(rows[name]["latency_ms"]["p50"], 6),
                 "round_p50_ms": [round(v, 6) for v in rows[name]["timing"]["round_p50_ms"]]}
        if name != "int8":
            # speedup over plain int8: int8's p50 / this one's, with the paired interval
            interval = ratio_interval(rows["int8"], rows[name], paired=True)
            entry["speedup_vs_int8"] = round(rows["int8"]["latency_ms"]["p50"] / rows[name]["latency_ms"]["p50"], 4)
            entry["speedup_vs_int8_ci95"] = [round(v, 4) for v in interval] if interval else None
        if name != "fp32":
            interval = ratio_interval(rows["fp32"], rows[name], paired=True)
            entry["speedup_vs_fp32"] = round(rows["fp32"]["latency_ms"]["p50"] / rows[name]["latency_ms"]["p50"], 4)
            entry["speedup_vs_fp32_ci95"] = [round(v, 4) for v in interval] if interval else None
        out[name] = entry
    out["how"] = (f"the timed rows' sessions and loop (edgekit.bench.timing.time_rounds), {ROUNDS} interleaved rounds "
                  f"of {RUNS_PER_ROUND} runs and at least {MIN_BLOCK_S * 1e3:g} ms per artifact, {threads} thread(s); "
                  "intervals: paired per-round ratios (Student's t); "
                  "a ratio counts only past session_noise, how far plain int8's p50 is from a second session of "
                  "itself")
    return out


def _faster(entry: dict, key: str, noise: float = 0.0) -> bool:
    """Whether the whole-model speedup ``key`` is above 1 (and the sessions' own noise) at the
    low end of its interval."""
    interval = entry.get(f"{key}_ci95")
    return bool(interval) and interval[0] > 1.0 + noise


#: what each int8 mix int8-fast may time against plain int8 is, as its "why" says it
_MIXES = {"kernels": "with those convolutions on the faster kernels", "candidate": "with those groups float"}


def _choose(timing: dict) -> tuple[str, str]:
    """(which artifact, why): the fastest int8 mix (``_MIXES``) that beats plain int8 beyond its
    interval and the sessions' own noise (``session_noise``), and fp32 where it beats that
    choice the same way."""
    choice, why = "int8", "no layer group is slower in int8 than in fp32 in every round"
    noise = timing.get("session_noise", 0.0)
    tried = [name for name in _MIXES if timing.get(name) is not None]
    passing = [name for name in tried if _faster(timing[name], "speedup_vs_int8", noise)]
    if passing:
        choice = max(passing, key=lambda name: timing[name]["speedup_vs_int8"])
        why = (f"{_MIXES[choice]} the whole model is {timing[choice]['speedup_vs_int8']:.2f}x plain int8 (95% "
               f"interval {_ci(timing[choice], 'speedup_vs_int8')})")
    elif tried:
        why = "; ".join(f"{_MIXES[name]} the whole model is {timing[name]['speedup_vs_int8']:.2f}x plain int8 (95% "
                        f"interval {_ci(timing[name], 'speedup_vs_int8')})" for name in tried)
        why += f", session noise {noise:.0%}: not faster beyond both, so plain int8 is kept"
    # fp32 against the choice: the choice's speedup_vs_fp32 below 1 at the high end of its interval
    chosen = timing[choice]
    interval = chosen.get("speedup_vs_fp32_ci95")
    if interval and interval[1] < 1.0 - noise:
        return "fp32", (f"fp32 is faster than the best int8 mix ({choice}: {chosen['speedup_vs_fp32']:.2f}x of fp32, 95% "
                        f"interval {interval[0]:.2f}-{interval[1]:.2f}): no int8 layer pays off on this CPU, every "
                        "layer stays float")
    return choice, why


def _ci(entry: dict, key: str) -> str:
    interval = entry.get(f"{key}_ci95")
    return f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "unknown"


def _scored(fmt, exported, made: dict, choice: str, why: str, record: dict, max_drop, data, task: str, threads: int,
            options: dict) -> tuple[str, str]:
    """The choice scored on the validation split; plain int8 where the choice loses more than
    the budget allows. Unscored (and kept) where there is no labelled validation split."""
    from edgekit.tasks import TASKS

    y_val = getattr(data, "y_val", None)
    if choice == "int8" or y_val is None or not len(y_val) or not TASKS[task].scored_validation:
        return choice, why
    from edgekit.convert.mixed import _keras_outputs, _Validation
    from edgekit.data import VALIDATION_CAP

    try:
        x_model = np.asarray(data.x_val)[:VALIDATION_CAP]
        artifact_inputs = getattr(data, "artifact_inputs", None)
        x = np.asarray(artifact_inputs(x_model) if artifact_inputs is not None else x_model, np.float32)
        validation = _Validation(x_model, np.asarray(data.y_val)[:VALIDATION_CAP], x, task)
        reference = validation.score(_keras_outputs(exported, validation.x))
        drops = {}
        for name in dict.fromkeys(["int8", choice]):
            session = fmt.load_runtime()(made[name][0], threads, options)
            drops[name] = validation.drop(validation.score(session.predict(validation.x)), reference)
    except (ValueError, RuntimeError) as exc:
        record["validation"] = f"not scored: {one_line(exc)}"
        return choice, why
    allowed = max_drop if max_drop is not None else drops["int8"] + 1.0 / max(1, len(validation.y))
    record["validation"] = {"metric": validation.metric, "reference": round(reference, 6),
                            "int8_drop": round(drops["int8"], 6), "drop": round(drops[choice], 6),
                            "allowed": round(allowed, 6), "samples": len(validation.y)}
    if drops[choice] > allowed + 1e-9:
        return "int8", (f"{why}; but its {validation.metric} drop on validation ({drops[choice]:.4f}) passes "
                        f"{allowed:.4f}, so plain int8 is kept")
    return choice, why
