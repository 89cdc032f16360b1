"""The bench stage: time every variant on every target that supports it, one results row per
(variant, target); measurements are cached per artifact (for an interleaving target: per set
of artifacts), target and benchmark settings."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from edgekit import interrupts
from edgekit.errors import one_line
from edgekit.evaluate import scores
from edgekit.evaluate.stage import score_outputs
from edgekit.locks import Hold, OnDemand
from edgekit.progress import step
from edgekit.report.rows import add_speedups, drop_impossible_values, make_row, outputs_block
from edgekit.variant import Variant


def benchmark(variants: list[Variant], data, recipe, log, baseline_outputs=None, cache=None,
              rows: list | None = None, latencies: dict | None = None, retime: bool = False,
              tf_threads: int | None = None, pool=None, run_dir=None,
              ahead=None, waits: list | None = None,
              retimed: list | None = None) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Time each variant on each target that supports it, appending one row per pair to ``rows``
    as it is measured (so an interrupted build keeps what it finished); returns the raw
    latencies and each target's environment block. ``baseline_outputs`` (the Keras model's test
    outputs) are the reference of parity for rows whose outputs a target produced itself.

    Targets that interleave (this machine's CPU) time all their rows together in the recipe's
    rounds, and cache them together: a ratio between two rows is always between runs of the
    same rounds. Others time row after row. Measurements come from ``cache`` when the
    artifacts, target and benchmark settings are unchanged, unless ``retime``.
    ``tf_threads`` is the intra-op thread count TensorFlow was started with in this process:
    when it is not ``benchmark.threads``, the rows of this machine's CPU are timed in a worker
    of ``pool`` (the build's executor, whose workers run TensorFlow at ``benchmark.threads``;
    see ``edgekit.bench.worker``); without one, the Keras row gets a note saying so.

    Before the rows of this machine's CPU are timed, each is probed in a fresh process of its
    own for its per-op profile and peak memory (``edgekit.bench.profiles``; ``benchmark.profile``),
    written to ``run_dir/profiles/`` and attached to its row (``profile``, ``memory``). An ssh
    device probes its rows itself, with the same probe, after timing them; its measurements carry
    the results (``Measurement.probe``), attached here the same way. Rows of other targets (the
    gpu) have both null. ``ahead`` holds probes the build started earlier
    (``profiles.start_ahead``: the Keras row's, while the variants convert).

    This machine's CPU is held exclusive from the first row (or probe) the cache does not hold
    to the end of its target's rows; a wait for it goes into ``waits`` (``locks.OnDemand``).

    Rows timed now (not from the cache) of which one is unstable are timed again, all of their
    target's rows together, up to ``benchmark.retime_unstable`` more times; the attempt with the
    fewest unstable rows is kept, and ``retimed`` gets one record per target that was
    (results.json ``retimed``: ``_until_stable``).
    """
    from edgekit.bench import profiles
    from edgekit.targets import in_order, resolve, search_dirs

    spec = recipe.benchmark
    samples = list(data.x_test[: spec.inputs])
    rows = [] if rows is None else rows
    latencies = {} if latencies is None else latencies
    baseline = variants[0]
    cache = None if retime else cache
    retimed = [] if retimed is None else retimed
    # cpu, then gpu, then devices: the first row stays the Keras fp32 baseline on this machine.
    targets = in_order(resolve(recipe.targets, search_dirs(recipe.path), log))
    groups = [(name, target, [v for v in variants if target.supports(v)]) for name, target in targets.items()]
    profiles.clear(run_dir)
    probed: dict[str, dict] = {}

    def add(target_name, target, variant, measurement):
        row_id = f"{variant.stem}@{target_name}"
        if measurement.latencies_ms:
            latencies[row_id] = measurement.latencies_ms
        row = make_row(row_id, variant, target_name, measurement, baseline, spec.unstable_spread,
                       getattr(spec, "clock_change", None))
        if measurement.status == "ok" and getattr(measurement, "probe", None) is not None and row_id not in probed:
            probed[row_id] = _attach_probe(row_id, measurement.probe, run_dir, log)  # probed where it ran (a device)
        found = probed.get(row_id) if measurement.status == "ok" else None
        row.update(profile=(found or {}).get("profile"), memory=(found or {}).get("memory"))
        if (found or {}).get("profile_error"):
            row["profile_error"] = found["profile_error"]
        ran = row["settings"].get("intra_op_threads") if variant.format == "keras" else None
        if ran not in (None, spec.threads) and measurement.status == "ok":
            row["notes"].append(f"Keras timed with TensorFlow's {ran} intra-op threads (benchmark.threads is "
                                f"{spec.threads}): set train.threads: {spec.threads} to time it alike")
        if getattr(target, "evaluates", False):  # metrics from this target's own outputs, never the host's
            found = target_evaluation(measurement.outputs, data, baseline, baseline_outputs, recipe.task)
            if "outputs" not in found:  # no outputs of its own (a skipped row): no per-output scores either
                row.pop("outputs", None)
            row.update(found)
            if (reasons := drop_impossible_values(row)) and row["status"] == "ok":
                row.update(status="failed", reason="; ".join(reasons))
        rows.append(row)

    # Rows are added in the groups' order; a group's rows wait until the groups before it are in.
    measured: dict[int, list] = {}
    added = 0

    def flush() -> None:
        nonlocal added
        while added in measured:
            target_name, target, _ = groups[added]
            for variant, measurement in measured.pop(added):
                add(target_name, target, variant, measurement)
            added += 1

    # This machine's targets first, each holding the host lock exclusive while it times (taken at
    # the first row or probe the cache does not hold: rows from the cache wait for nobody); then
    # every device at once, each benchmarked by one task holding that device's lock.
    environments: dict[str, dict] = {}
    for index, (target_name, target, group) in enumerate(groups):
        if not target.times_here:
            continue
        hold = Hold(task=f"bench {target_name}", kind="bench", mode="exclusive")
        with OnDemand(lambda hold=hold: _holding(pool, hold, log), waits, "bench") as exclusive:
            measured[index] = _bench_here(target_name, target, group, spec, samples, data, cache, log,
                                          recipe, run_dir, ahead, probed, tf_threads, pool, exclusive.take,
                                          retimed)
        flush()
    away = [(index, name, target, group) for index, (name, target, group) in enumerate(groups) if not target.times_here]
    if away:
        what, rows_away = f"timing {', '.join(name for _, name, _, _ in away)}", sum(len(g) for _, _, _, g in away)
        with ThreadPoolExecutor(len(away), thread_name_prefix="edgekit-device") as threads:
            futures = [threads.submit(_bench_away, name, target, group, spec, samples, data, cache, log, recipe, pool,
                                      retimed) for _, name, target, group in away]
            timed = 0
            for (index, name, _, group), future in zip(away, futures):
                measured[index], environment = future.result()
                if environment:
                    environments[name] = environment
                timed += len(group)
                step(log, what, timed, rows_away)  # a device's rows come back together
                flush()
    add_speedups(rows)
    return latencies, {name: environments.get(name) or target.environment() for name, target in targets.items()}


def _holding(pool, hold, log):
    """The executor's hold (its record goes into results.json ``tasks``), or the bare locks."""
    from edgekit.locks import holding

    return pool.hold(hold, log) if pool is not None else holding(hold, log)


def _bench_here(target_name, target, group, spec, samples, data, cache, log, recipe, run_dir, ahead,
                probed, tf_threads, pool, take=None, retimed=None) -> list:
    """[(variant, Measurement)] of a target on this machine, in ``group``'s order. ``take()``
    holds this machine's CPU, before anything is probed or timed (not for what the cache holds)."""
    from edgekit.bench import profiles
    from edgekit.targets import Measurement

    ready = [v for v in group if v.status == "ok"]
    if getattr(target, "interleaves", False):
        elsewhere = pool if (tf_threads not in (None, spec.threads) and target.uses_host_session
                             and getattr(pool, "same_machine", False)) else None
        if target.probes_here:  # this machine: each row probed in a fresh process, before the rounds
            ids = [f"{v.stem}@{target_name}" for v in ready]
            try:
                probed.update(profiles.profile_rows(ready, ids, recipe, samples, run_dir, cache, log, ahead,
                                                    before_probes=take))
            except Exception as exc:  # noqa: BLE001 - a profile never fails a row or the build
                interrupts.reraise_if_interrupted()
                log(f"[profile] skipped: {one_line(exc)}")
        # the bar counts blocks (one row in one round) as the rounds time them, here or in the worker;
        # a timing again of unstable rows (``_until_stable``) gets a bar of its own
        attempt = {"n": 1}

        def bar() -> str:
            again = f", attempt {attempt['n']}" if attempt["n"] > 1 else ""
            return f"timing {target_name} ({len(ready)} rows x {spec.rounds} rounds{again})"

        target.progress = lambda blocks, of: step(log, bar(), blocks, of)
        try:
            timed = dict(zip(map(id, ready), _measure_group(target, target_name, ready, spec, samples, data,
                                                            cache, log, recipe, elsewhere, take=take,
                                                            retimed=retimed,
                                                            on_attempt=lambda n: attempt.update(n=n))))
        finally:
            target.progress = None
        return [(v, timed[id(v)] if id(v) in timed else Measurement(v.status, v.reason)) for v in group]
    out = []
    for variant in group:
        if variant.status != "ok":
            out.append((variant, Measurement(variant.status, variant.reason)))
            continue
        row_id = f"{variant.stem}@{target_name}"
        out.append((variant, _measure(target, target_name, variant, spec, samples, data, cache, log, row_id, take,
                                      retimed)))
        step(log, f"timing {target_name}", sum(1 for v, _ in out if v.status == "ok"), len(ready))
    return out


def _bench_away(target_name, target, group, spec, samples, data, cache, log, recipe, pool,
                retimed=None) -> tuple[list, dict | None]:
    """A device's rows, timed in jobs that each hold one device (the device, or a pool's free
    member: ``edgekit.bench.fleet``), on the executor's workers when they are a cluster's, in
    threads here otherwise; returns them with the target's environment."""
    from edgekit.bench import fleet
    from edgekit.targets import Measurement

    ready = [v for v in group if v.status == "ok"]
    environment: dict = {}

    def run_task():
        eval_inputs = data.x_test if target.evaluates else None
        measurements, env = fleet.run(target, ready, spec, samples, eval_inputs, recipe.seed, pool, log)
        environment.update(env or {})
        return measurements

    timed = dict(zip(map(id, ready), _measure_group(target, target_name, ready, spec, samples, data, cache, log, recipe,
                                                    device_run=run_task, retimed=retimed)))
    return [(v, timed[id(v)] if id(v) in timed else Measurement(v.status, v.reason)) for v in group], environment


def _attach_probe(row_id: str, value: dict, run_dir, log) -> dict:
    """A target's own probe result (``Measurement.probe``) as the row's fields, through
    ``profiles.attach`` as for this machine's rows; never fails the row."""
    from edgekit.bench import profiles

    if value.get("probe_failed") and value.get("profile_error"):
        log(f"[profile] {row_id}: {value['profile_error']}")
    try:
        return profiles.attach(row_id, value, run_dir)
    except Exception as exc:  # noqa: BLE001 - a profile never fails a row or the build
        interrupts.reraise_if_interrupted()
        return {"memory": None, "profile": None, "profile_error": f"probe result unreadable: {one_line(exc)}"}


def _outputs_file(folder, name: str):
    return folder / ("outputs.npy" if name == "measurement" else f"{name}.outputs.npy")


def _store_measurement(measurement, folder, name: str = "measurement") -> None:
    fields = {k: v for k, v in vars(measurement).items() if k != "outputs"}
    (folder / f"{name}.json").write_text(json.dumps(fields, default=str))
    if measurement.outputs is not None:
        np.save(_outputs_file(folder, name), np.asarray(measurement.outputs))


def _load_measurement(folder, name: str = "measurement"):
    from edgekit.targets import Measurement

    saved = json.loads((folder / f"{name}.json").read_text())
    outputs_file = _outputs_file(folder, name)
    measurement = Measurement(**saved, outputs=np.load(outputs_file) if outputs_file.exists() else None)
    _check_measurement(measurement)
    return measurement


def _measure_group(target, target_name, variants, spec, samples, data, cache, log, recipe, pool=None, device_run=None,
                   take=None, retimed=None, on_attempt=None):
    """All rows of an interleaving target, timed together (or all from the cache together);
    in a worker of ``pool`` when one is given and every row can travel there; by
    ``device_run()`` (a device's task) when given. ``take()`` first, when they are timed."""
    from edgekit.cache import fingerprint, make_key

    if not variants:
        return []
    ids = [f"{v.stem}@{target_name}" for v in variants]
    seed = recipe.seed

    def compute():
        if take is not None:
            take()
        return _until_stable(time_once, ids, spec, target_name, log, retimed, on_attempt)

    def time_once():
        log(f"[bench] {target_name}: {len(variants)} row(s) in {spec.rounds} interleaved round(s)")
        if device_run is not None:
            return device_run()
        if pool is not None and any(v.format == "keras" for v in variants):
            from edgekit.bench.worker import spec_of, time_group

            specs = [spec_of(v, recipe) for v in variants]
            if all(specs):
                log(f"[bench] {target_name}: timed in the worker process, whose TensorFlow runs "
                    f"benchmark.threads ({spec.threads}) threads (this one's runs train.threads)")
                def blocks(kind: str, text: str) -> None:  # the worker's blocks, on this process's bar
                    if kind == "progress" and getattr(target, "progress", None) is not None:
                        target.progress(*(int(n) for n in text.split("/")))

                try:
                    return pool.submit(time_group, specs, samples, spec, seed, on_message=blocks).result()
                except Exception as exc:  # noqa: BLE001 - a dead worker fails the rows, not the build
                    interrupts.reraise_if_interrupted()
                    return [_failed(f"benchmark failed in the worker process: {one_line(exc)}") for _ in variants]
        try:
            for variant in variants:
                variant.ensure_session()
            return target.measure_all(variants, spec, samples, data.x_test if target.evaluates else None, seed=seed)
        except Exception as exc:  # noqa: BLE001
            interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
            reason = f"benchmark failed: {one_line(exc)}"
            return [_time(target, row_id, v, spec, samples, data, log) if v.session is not None
                    else _failed(reason) for row_id, v in zip(ids, variants)]

    if cache is None or any(v.key is None for v in variants):
        return compute()
    key = make_key("bench", subjects=[v.key for v in variants], rows=ids, target=target_name,
                   where=target.cache_identity(), spec=_keyed(spec), inputs=fingerprint(*samples, data.x_test), seed=seed,
                   code=sorted({_timing_code(target, v) for v in variants}))

    def store(measurements, folder):
        for i, measurement in enumerate(measurements):
            _store_measurement(measurement, folder, f"row{i}")

    def load(folder):
        return [_load_measurement(folder, f"row{i}") for i in range(len(variants))]

    measurements, reused = cache.fetch("bench", key, f"{target_name} ({len(variants)} rows)", load=load, store=store,
                                       keep=lambda ms: all(m.status == "ok" for m in ms), compute=compute)
    cache.name_entry(key, ids)
    if reused:
        log(f"[bench] {target_name}: {len(variants)} row(s) (cached)")
    return measurements


def _failed(reason):
    from edgekit.targets import Measurement

    return Measurement("failed", reason)


def _measure(target, target_name, variant, spec, samples, data, cache, log, row_id, take=None, retimed=None):
    """One measurement, from the cache when the same artifact was timed the same way on the same
    target (this machine's CPU, or the same device profile); ``take()`` first when it is timed."""
    from edgekit.cache import fingerprint, make_key

    def timed():
        if take is not None:
            take()
        return _until_stable(lambda: [_time(target, row_id, variant, spec, samples, data, log)], [row_id], spec,
                             target_name, log, retimed)[0]

    if cache is None or variant.key is None:
        return timed()
    key = make_key("bench", subject=variant.key, target=target_name, where=target.cache_identity(), spec=_keyed(spec),
                   inputs=fingerprint(*samples, data.x_test), code=_timing_code(target, variant))
    measurement, reused = cache.fetch("bench", key, row_id, load=_load_measurement, store=_store_measurement,
                                      keep=lambda m: m.status == "ok", compute=timed)
    if reused:
        log(f"[bench] {row_id} (cached)")
    return measurement


def _keyed(spec) -> dict:
    """The benchmark settings a measurement's cache key holds: all but how often an unstable
    measurement is taken again (it changes no measurement's meaning)."""
    return spec.model_dump(exclude={"retime_unstable"})


def _unstable(measurement, spec) -> bool:
    """Whether a measurement's rounds disagree (``stats.summarize_rounds``, as its row will say)."""
    from edgekit.bench.stats import summarize_rounds

    if measurement.status != "ok" or not measurement.latencies_ms or not getattr(measurement, "rounds_ms", None):
        return False
    return bool(summarize_rounds(1.0, measurement.rounds_ms, spec.unstable_spread).get("unstable"))


def _until_stable(time_once, ids: list[str], spec, target_name: str, log, retimed: list | None,
                  on_attempt=None) -> list:
    """``time_once()`` (the measurements of ``ids``, timed together), and again while one of them
    is unstable, at most ``spec.retime_unstable`` more times (``on_attempt(n)`` before attempt n
    from the second on); returns the attempt with the fewest unstable rows (the latest of
    equals). A target timed more than once gets a record in ``retimed``: its rows, the unstable
    ones of each attempt, the attempt kept."""
    limit = getattr(spec, "retime_unstable", 0) or 0
    attempts = [time_once()]
    shaky = [[i for i, m in zip(ids, attempts[0]) if _unstable(m, spec)]]
    while shaky[-1] and len(attempts) <= limit:
        log(f"[bench] {target_name}: {len(shaky[-1])} row(s) unstable ({', '.join(shaky[-1][:3])}"
            f"{', ...' if len(shaky[-1]) > 3 else ''}): timing its {len(ids)} row(s) again, attempt "
            f"{len(attempts) + 1} of at most {limit + 1}")
        if on_attempt is not None:
            on_attempt(len(attempts) + 1)
        attempts.append(time_once())
        shaky.append([i for i, m in zip(ids, attempts[-1]) if _unstable(m, spec)])
    kept = min(range(len(attempts)), key=lambda i: (len(shaky[i]), -i))
    if len(attempts) > 1:
        log(f"[bench] {target_name}: kept attempt {kept + 1} of {len(attempts)} ({len(shaky[kept])} row(s) unstable)")
        if retimed is not None:
            retimed.append({"target": target_name, "rows": list(ids), "attempts": len(attempts),
                            "unstable": shaky, "kept": kept + 1, "limit": limit})
    return attempts[kept]


def _timing_code(target, variant) -> str:
    """Hash of the code that times ``variant`` on ``target``: its runtime session (the format
    table's, or the Keras session for the baseline), the timing loop and statistics, the target kind."""
    from edgekit.bench import stats
    from edgekit.cache import source_hash
    from edgekit.formats import FORMATS

    fmt = FORMATS.get(variant.format)
    runtime = fmt.runtime_module if fmt else "edgekit.runtimes.keras"
    return source_hash(runtime, "edgekit.runtimes", stats.time_rounds.__module__, stats.__name__, type(target).__module__)


def _time(target, row_id, variant, spec, samples, data, log):
    """Time ``variant`` on ``target``; a failure is a failed measurement, never an exception."""
    log(f"[bench] {row_id}")
    try:
        variant.ensure_session()
        return target.measure(variant, spec, samples, data.x_test)
    except Exception as exc:  # noqa: BLE001
        interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
        return _failed(f"benchmark failed: {one_line(exc)}")


def _check_measurement(m) -> None:
    """A cached measurement must be one a benchmark could have produced (the checksum catches
    a damaged file; this catches one that was written wrong)."""
    times = np.asarray(m.latencies_ms or [], dtype=float)
    if m.status != "ok" or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError("measurement.json holds a status or latencies no benchmark produces")


def target_evaluation(outputs, data, baseline: Variant, baseline_outputs, task: str) -> dict[str, Any]:
    """Metrics, delta and parity of the test-split outputs a target produced itself (empty
    when it produced none: a failed or skipped row has no metrics of its own)."""
    if outputs is None:
        return {"metrics": {}, "delta": {}, "parity": {}}
    if baseline_outputs is None:
        baseline_outputs = baseline.session.predict(data.x_test)
    metrics, parity, per_output = score_outputs(outputs, data, baseline_outputs, task)
    found = {"metrics": metrics, "delta": scores.delta(metrics, baseline.metrics), "parity": parity}
    if per_output:
        found["outputs"] = outputs_block(per_output, baseline.outputs)
    return found
