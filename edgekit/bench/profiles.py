"""Per-op profiles and peak memory of the rows of this machine's CPU (the ``cpu`` target).

Each ok row gets one fresh process (``python -m edgekit.runtimes.probe``), started before the
timed rounds and finished before they begin, so the reported latency is never measured beside
it and the timed sessions are never profiled. The probes of a build run in parallel, at most
``max(1, os.cpu_count() // benchmark.threads)`` at a time, the Keras row's first (importing
TensorFlow is the slow part; the build starts it ahead, while the variants convert: ``start_ahead``).
Each result is cached under the stage ``profile``, keyed by the
artifact, the threads, the runtime's package versions and the probe's code, so a cached rebuild
starts no probe. A probe that fails or times out never fails its row: the row gets ``profile``
and ``memory`` null and a ``profile_error`` line.

An ssh device probes its own rows with the same probe (``edgekit/targets/runner.py``, after
timing them); its results arrive on the measurements and are attached with ``attach`` as here.
Rows of the gpu get no profile and no memory (null).

What "accelerated" means, per runtime (one definition, used by the summary and the causes):

- LiteRT: the op runs inside an XNNPACK partition (a DELEGATE node); an op on LiteRT's
  built-in kernels is not accelerated.
- OpenVINO: the node ran a kernel that is not a reference one (exec_type not ``ref_*``) at the
  row's intended precision (fp32, bf16 or int8; int8-mixed: int8 or fp32): a bf16 node in an
  fp32 row, or an f32 node in an int8 row (the input's FakeQuantize, say), is not.
- onnxruntime: a compute op (Conv, MatMul, Gemm ...) in its quantized or fused kernel, or any op
  of a float row; in a quantized row, QuantizeLinear/DequantizeLinear nodes that still execute
  and compute ops that run in float are not accelerated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import lifeline
from edgekit.errors import shorten
from edgekit.progress import step
from edgekit.targets.runner import probe_failed

#: the cache stage of probe results
STAGE = "profile"
#: how long one probe may take before it is killed (its row then has no profile)
TIMEOUT_S = 120.0
#: profiled inferences per row (each runtime may take more, for a figure its clock resolves)
RUNS = 50
#: op types a results row lists
TOP_TYPES = 5
#: not-accelerated ops a results row lists (the slowest)
SLOW_OPS = 10
#: the run directory's folder of full profiles
FOLDER = "profiles"


def clear(run_dir: Path | None) -> None:
    """Remove the previous run's profiles/ (each build writes its own)."""
    if run_dir is not None:
        shutil.rmtree(Path(run_dir) / FOLDER, ignore_errors=True)


class Ahead:
    """Probes started before the bench stage, while the build still converts: the Keras row's,
    whose fresh process spends seconds importing TensorFlow. Memory is not disturbed by the
    conversions beside it, and the Keras probe times nothing. ``profile_rows`` adopts them;
    ``close`` kills what is left (a build that stopped early)."""

    def __init__(self):
        self.folder: Path | None = None
        #: row id -> the running probe (as ``_launch`` returns it)
        self.running: dict[str, tuple] = {}

    def close(self) -> None:
        for _, proc, err, _began in self.running.values():
            _stop(proc, err)
        self.running.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def start_ahead(ahead: Ahead, variant, row_id: str, recipe, samples, cache=None, before_launch=None) -> None:
    """Start ``variant``'s probe now, unless profiling is off or the cache holds its result;
    ``before_launch()`` first (the build's hold of this machine's CPU)."""
    spec = recipe.benchmark
    if not spec.profile or variant.status != "ok":
        return
    samples = _probe_samples(samples)
    key = _key(variant, spec, samples)
    if key is None or (cache is not None and cache.enabled and cache.entry(STAGE, key).exists()):
        return
    if before_launch is not None:
        before_launch()
    if ahead.folder is None:
        ahead.folder = Path(tempfile.mkdtemp(prefix="edgekit-probe-"))
    started = _launch(ahead.folder, row_id, variant, recipe, samples)
    if isinstance(started, tuple):
        ahead.running[row_id] = started


def _probe_samples(samples) -> np.ndarray:
    """The inputs a probe runs on: the first 16 benchmark inputs."""
    from edgekit.runtimes import as_samples

    return as_samples(samples[: max(1, min(len(samples), 16))])


def profile_rows(variants: list, row_ids: list[str], recipe, samples, run_dir: Path | None, cache=None,
                 log=print, ahead: Ahead | None = None, before_probes=None) -> dict[str, dict[str, Any]]:
    """Probe every ok variant of the cpu target: ``{row id: {"profile", "memory", "profile_error"}}``;
    full profiles go to ``run_dir/profiles/<row id>.json``. Nothing happens when
    ``benchmark.profile`` is false.

    Args:
        variants: the ok variants of the cpu target, in build order.
        row_ids: their row ids.
        recipe: the build's recipe (benchmark settings, export options, import folders).
        samples: the benchmark inputs (float32 samples, no batch axis); the probes run on them.
        run_dir: where profiles/ is written; None: nowhere (results only).
        cache: the build's cache, or None.
        ahead: probes started earlier (``start_ahead``), taken over here.
        before_probes: called before the first probe runs (the bench stage takes the host lock),
            never when every row's probe comes from the cache.
    """
    spec = recipe.benchmark
    if not spec.profile or not variants:
        return {}
    samples = _probe_samples(samples)
    keys = {row_id: _key(variant, spec, samples) for row_id, variant in zip(row_ids, variants)}
    found, missing = {}, []
    for row_id, variant in zip(row_ids, variants):
        key = keys[row_id]
        if cache is not None and key is not None:
            value, reused = cache.fetch(STAGE, key, row_id, load=_load, store=_store, keep=lambda v: False,
                                        compute=lambda: None)
            if reused and value is not None:
                found[row_id] = value
                continue
        missing.append((row_id, variant))
    if missing:
        if before_probes is not None:
            before_probes()
        started = time.perf_counter()
        computed = _run_probes(missing, recipe, samples, log, ahead)
        log(f"[profile] {len(missing)} row(s) probed in {time.perf_counter() - started:.1f} s "
            f"(fresh processes, outside the timed rounds)")
        for row_id, value in computed.items():
            found[row_id] = value
            if cache is not None and keys[row_id] is not None and value.get("memory") is not None \
                    and not value.get("probe_failed"):
                try:
                    cache.put(STAGE, keys[row_id], row_id, lambda folder, v=value: _store(v, folder))
                except OSError as exc:
                    log(f"[cache] could not store the profile of {row_id} ({exc})")
    if len(found) > len(missing):
        log(f"[profile] {len(found) - len(missing)} row(s) (cached)")
    out = {}
    for row_id in row_ids:
        value = found.get(row_id) or {"memory": None, "profile": None, "profile_error": "no probe result"}
        out[row_id] = attach(row_id, value, run_dir)
    return out


def attach(row_id: str, value: dict, run_dir: Path | None) -> dict[str, Any]:
    """A probe's result as a row's fields; writes the full profile to profiles/<row id>.json."""
    profile = value.get("profile")
    fields = {"memory": value.get("memory"), "profile": None, "profile_error": value.get("profile_error")}
    if profile:
        name = f"{FOLDER}/{_file_name(row_id)}.json"
        if run_dir is not None:
            target = Path(run_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps({"row": row_id, **profile}, indent=1, default=str))
        fields["profile"] = summarize(profile, name if run_dir is not None else None)
    return fields


def _file_name(row_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in row_id)


def units(profile: dict) -> list[dict]:
    """What a profile's time is divided into: each op, except that in LiteRT the ops of one
    XNNPACK partition share one time (the partition's), so each partition is one unit."""
    if profile.get("segments"):
        by_index = {op["index"]: op for op in profile["ops"]}
        out = []
        for seg in profile["segments"]:
            members = [by_index[i] for i in seg["ops"] if i in by_index]
            if len(members) == 1 and not members[0]["accelerated"]:
                out.append({"type": members[0]["type"], "count": 1, "accelerated": False, "share": seg["share"],
                            "ms": seg["ms"], "precision": members[0]["precision"],
                            "share_rounds": seg.get("share_rounds")})
            else:
                inside = members[0]["accelerated"] if members else True
                out.append({"type": "XNNPACK partition" if inside else members[0]["type"], "count": len(members),
                            "accelerated": inside, "share": seg["share"], "ms": seg["ms"],
                            "members": [m["type"] for m in members],
                            "precision": members[0]["precision"] if members else "unknown",
                            "share_rounds": seg.get("share_rounds")})
        return out
    return [{"type": op["type"], "count": 1, "accelerated": bool(op["accelerated"]), "share": op.get("share"),
             "ms": op.get("ms"), "precision": op.get("precision"), "share_rounds": op.get("share_rounds")}
            for op in profile.get("ops") or []]


def share_spread(entries) -> dict:
    """``{"share_low", "share_high"}``: the smallest and largest per-round share of ``entries``
    together (each with ``share_rounds``: a profile's rounds), or {} where a round is missing.
    A share whose low end is 0 is not the entries' own: the rounds disagree, and the causes
    never name it (``edgekit.runtimes.wording.blamed``)."""
    rounds = [entry.get("share_rounds") for entry in entries]
    if not rounds or not all(rounds) or len({len(r) for r in rounds}) != 1:
        return {}
    sums = [sum(column) for column in zip(*rounds)]
    return {"share_low": round(min(sums), 4), "share_high": round(max(sums), 4)}


def summarize(profile: dict, file: str | None) -> dict[str, Any]:
    """results.json's ``profile`` of a row: how it was measured, the partition count (LiteRT),
    the executed ops, the TOP_TYPES op types by share of time and what was not accelerated
    (see the module docstring)."""
    ops = profile.get("ops") or []
    grouped: dict[tuple, dict] = {}
    members: dict[tuple, list] = {}
    for unit in units(profile):
        entry = grouped.setdefault((unit["type"], unit["accelerated"]),
                                   {"type": unit["type"], "share": None, "count": 0, "accelerated": unit["accelerated"],
                                    "ms": None})
        members.setdefault((unit["type"], unit["accelerated"]), []).append(unit)
        entry["count"] += unit["count"]
        if unit.get("share") is not None:
            entry["share"] = round((entry["share"] or 0.0) + unit["share"], 4)
            entry["ms"] = round((entry["ms"] or 0.0) + (unit.get("ms") or 0.0), 6)
    for group, entry in grouped.items():
        entry.update(share_spread(members[group]))
    top = sorted(grouped.values(), key=lambda e: -(e["share"] or 0.0))[:TOP_TYPES]
    slow = [op for op in ops if not op.get("accelerated")]
    shares_known = all(op.get("share") is not None for op in slow)
    summary = {
        "how": profile.get("how"),
        "runtime": profile.get("runtime"),
        "partitions": profile.get("partitions"),
        "ops": len(ops),
        "top_op_types": top,
        "not_accelerated": {"ops": len(slow),
                            "share": round(sum(op["share"] for op in slow), 4) if shares_known else None,
                            **(share_spread(slow) if slow else {}),
                            "types": sorted(dict.fromkeys(op["type"] for op in slow)),
                            "top": [{**{k: op.get(k) for k in ("name", "type", "where", "precision", "share", "exec_type")
                                        if op.get(k) is not None or k == "share"}, **share_spread([op])}
                                    for op in sorted(slow, key=lambda op: -(op.get("share") or 0.0))[:SLOW_OPS]]},
        "op_counts": {t: sum(1 for op in ops if op["type"] == t) for t in dict.fromkeys(op["type"] for op in ops)},
        "total_ms": profile.get("total_ms") if profile.get("total_ms") is not None else profile.get("profiled_ms"),
        "unprofiled_ms": profile.get("unprofiled_ms"),
        "file": file,
    }
    if profile.get("partitions"):
        inside = [u for u in units(profile) if u["accelerated"]]
        summary["xnnpack"] = {"share": round(sum(u["share"] or 0.0 for u in inside), 4) if all(
            u["share"] is not None for u in inside) else None, "ms": round(sum(u["ms"] or 0.0 for u in inside), 6),
            **share_spread(inside)}
    for field in ("qdq", "float_compute", "reference_kernels", "shares_unknown"):
        if profile.get(field) is not None:
            summary[field] = profile[field]
    if "exec_type" in (ops[0] if ops else {}):
        precisions: dict[str, int] = {}
        for op in ops:
            precisions[op["precision"]] = precisions.get(op["precision"], 0) + 1
        summary["precisions"] = precisions
        kernels: dict[tuple, float] = {}
        for op in ops:
            kernels[op["type"], op["exec_type"]] = kernels.get((op["type"], op["exec_type"]), 0.0) + (op["share"] or 0)
        summary["kernels"] = [{"type": t, "exec_type": e, "share": round(v, 4)}
                              for (t, e), v in sorted(kernels.items(), key=lambda kv: -kv[1])[:3]]
        reference = [op for op in ops if op.get("where") == "reference kernel"]
        summary["reference"] = {"ops": len(reference), "share": round(sum(op["share"] or 0 for op in reference), 4),
                                "precisions": sorted(dict.fromkeys(op["precision"] for op in reference))}
    return summary


def _key(variant, spec, samples) -> str | None:
    """The probe's cache key: the artifact (its key), threads, the runtime's versions, the code."""
    from edgekit.cache import fingerprint, make_key, source_hash
    from edgekit.environment import package_versions
    from edgekit.formats import FORMATS

    if variant.key is None:
        return None
    fmt = FORMATS.get(variant.format)
    module = fmt.runtime_module if fmt else "edgekit.runtimes.keras"
    packages = fmt.packages if fmt else ("tensorflow", "tf-keras", "keras")
    installed = package_versions(packages)
    versions = {name: installed.get(name, "") for name in packages}  # a missing one as "", as Format.versions does
    return make_key(STAGE, subject=variant.key, threads=spec.threads, runs=RUNS, versions=versions,
                    inputs=fingerprint(samples), code=source_hash("edgekit.runtimes.probe", "edgekit.runtimes", module,
                                                                  __name__))


def _store(value: dict, folder: Path) -> None:
    (folder / "probe.json").write_text(json.dumps(value, default=str))


def _load(folder: Path) -> dict:
    value = json.loads((folder / "probe.json").read_text())
    if not isinstance(value, dict) or "memory" not in value:
        raise ValueError("probe.json holds no probe result")
    return value


def _request(variant, recipe, row_id: str, folder: Path, samples_file: Path) -> dict:
    from edgekit.bench.worker import spec_of
    from edgekit.formats import FORMATS

    spec = spec_of(variant, recipe)
    if spec is None:
        raise ValueError("the artifact cannot be opened in another process (no file, or an unknown format)")
    fmt = FORMATS.get(variant.format)
    # an int8-fast row whose search kept every layer float is the fp32 artifact: profiled as one
    fast = (variant.settings or {}).get("fast") or {}
    precision = "fp32" if fast.get("choice") == "fp32" else variant.precision
    request = {"format": variant.format, "precision": precision, "path": str(Path(spec.path).resolve()),
               "module": fmt.runtime_module if fmt else "edgekit.runtimes.keras", "options": spec.options or {},
               "threads": recipe.benchmark.threads, "samples": str(samples_file), "runs": RUNS,
               "profile": True, "workdir": str(folder), "runtime_module": None}
    if variant.format == "keras":
        request["keras"] = {"keras": spec.keras, "custom_layers": [list(c) for c in spec.custom_layers],
                            "import_dirs": list(spec.import_dirs)}
    return request


def _launch(folder: Path, row_id: str, variant, recipe, samples) -> tuple | dict:
    """Start one probe process: (name, process, stderr file, start time), or a failed result."""
    from edgekit import interrupts
    from edgekit.errors import one_line

    name = _file_name(row_id)
    samples_file = folder / f"{name}.samples.npy"
    try:
        np.save(samples_file, samples)
        request = _request(variant, recipe, row_id, folder, samples_file)
    except Exception as exc:  # noqa: BLE001 - no probe for this row, never a failed row
        interrupts.reraise_if_interrupted()
        return probe_failed(f"probe not started: {one_line(exc, 200)}")
    (folder / f"{name}.request.json").write_text(json.dumps(request))
    # The probe runs in its own folder: this process's import path, made absolute ('' is its cwd).
    path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    env = lifeline.child_env({**os.environ, "PYTHONPATH": os.pathsep.join(path), "TF_CPP_MIN_LOG_LEVEL": "2"})
    err = open(folder / f"{name}.stderr", "wb")  # noqa: SIM115 - open while the probe runs
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.runtimes.probe", str(folder / f"{name}.request.json"),
                             str(folder / f"{name}.result.json")], stdout=subprocess.DEVNULL, stderr=err,
                            env=env, cwd=str(folder))
    return name, proc, err, time.monotonic()


def _stop(proc, err) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    err.close()


def _run_probes(missing: list, recipe, samples, log, ahead: Ahead | None = None) -> dict[str, dict]:
    """Run the probes of ``missing`` ((row id, variant) pairs), in parallel, Keras first; a
    probe ``ahead`` started is waited for instead of started again."""
    folder = Path(tempfile.mkdtemp(prefix="edgekit-probe-"))
    limit = max(1, (os.cpu_count() or 1) // max(1, recipe.benchmark.threads))
    results: dict[str, dict] = {}
    running: list[tuple] = []  # (row id, folder, (name, process, stderr, start))
    adopted = ahead.running if ahead is not None else {}
    for row_id, _ in missing:
        if row_id in adopted:
            running.append((row_id, ahead.folder, adopted.pop(row_id)))
    queue = sorted((pair for pair in missing if pair[0] not in {r for r, _, _ in running}),
                   key=lambda pair: pair[1].format != "keras")
    try:
        while queue or running:
            while queue and len(running) < limit:
                row_id, variant = queue.pop(0)
                started = _launch(folder, row_id, variant, recipe, samples)
                if isinstance(started, dict):
                    results[row_id] = started
                else:
                    running.append((row_id, folder, started))
            time.sleep(0.02)
            for item in list(running):
                row_id, where, (name, proc, err, began) = item
                if proc.poll() is None and time.monotonic() - began < TIMEOUT_S:
                    continue
                if proc.poll() is None:
                    _stop(proc, err)
                    results[row_id] = probe_failed(f"probe timed out after {TIMEOUT_S:.0f} s")
                else:
                    err.close()
                    results[row_id] = _result(where, name, proc.returncode)
                running.remove(item)
                step(log, "profiling rows", len(results), len(missing))
    finally:
        for _, _, (_, proc, err, _) in running:
            _stop(proc, err)
        shutil.rmtree(folder, ignore_errors=True)
        if ahead is not None:
            ahead.close()
    for row_id, value in results.items():
        if value.get("probe_failed"):
            log(f"[profile] {row_id}: {value['profile_error']}")
    return results


def _result(folder: Path, name: str, code: int) -> dict:
    out = folder / f"{name}.result.json"
    if code == 0 and out.exists():
        try:
            value = json.loads(out.read_text())
            if isinstance(value, dict) and "memory" in value:
                return value
        except ValueError:
            pass
    tail = ""
    try:
        lines = [line for line in (folder / f"{name}.stderr").read_text(errors="replace").splitlines() if line.strip()]
        tail = shorten(lines[-1], 200) if lines else ""
    except OSError:
        pass
    return probe_failed(f"probe exited with {code}" + (f": {tail}" if tail else ""))

