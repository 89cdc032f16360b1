"""A build's own work as one task on a worker, for executors whose ``whole_builds`` is set (Dask).

Without it, a build trains, fine-tunes and evaluates the Keras baseline in its own process and
sends only conversions and device benchmarks out. With it, the task ``prepare`` runs the pipeline
on a worker up to the bench stage (``pipeline.build(until=...)``): the stage cache (on the shared
filesystem) and the run directory get the trained and compressed models, the baseline's
evaluation and, with scope "variants", every artifact and its evaluation. The build's own process
then runs the ordinary pipeline, finds those stages in the cache, and times this machine's rows
alone on it (the host lock); device benchmarks go out as before.

Scopes:

- "models": data, training, fine-tuning and the Keras baseline. A single recipe uses it: its
  conversions stay tasks of their own, spread over every worker as before.
- "variants": also every conversion and evaluation, in the worker's own process, one after
  another. Several recipes and a search's trials use it: the spread comes from the builds, and
  each comes back ready to time.

The preparation only fills the cache, so it can never give another answer: whatever it did not
finish (a worker that died twice, a converter that crashed it) the build computes as it would
without one, with its usual crash isolation.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import SchedulerLost, one_line
from edgekit.executors import base as executor_base
from edgekit.locks import Hold, host_name, task_record

#: the run directory's log of what the preparation said on its worker (pipeline.RUN_FILES)
PREPARE_LOG = "prepare.log"
SCOPES = ("models", "variants")


@dataclass
class Travelled:
    """What the build does differently once its work was prepared elsewhere."""

    cache: object
    #: the preparation ran with --fresh: the build reads its entries, and times every row again
    retime: bool
    #: the preparation's task records (host, holder, start, end), for results.json ``tasks``
    records: list[dict] = field(default_factory=list)


def submit(executor, recipe, run_dir: Path, cache, *, force: bool = False, tensorboard: bool = True,
           scope: str = "variants") -> Future | None:
    """Send ``recipe``'s preparation to ``executor``; None where its builds do not travel (or the
    recipe has no file a worker could read). The future's ``lines`` collect its log lines."""
    if not getattr(executor, "whole_builds", False) or recipe.path is None:
        return None
    lines: list[str] = []
    future = executor.submit(prepare, str(recipe.path), str(Path(run_dir).resolve()), str(cache.root),
                             not cache.enabled, force, tensorboard, scope,
                             on_message=lambda kind, text: lines.append(text) if kind == "log" else None,
                             hold=Hold(task=f"prepare {recipe.name}", kind="prepare"))
    future.lines = lines  # type: ignore[attr-defined]
    return future


def prepare(recipe_path: str, run_dir: str, cache_root: str, fresh: bool, force: bool, tensorboard: bool,
            scope: str) -> dict:
    """The task, on a worker: the pipeline of one recipe up to the bench stage (``scope``).
    Conversions run in this process, one after another: a Dask worker's process may not start
    worker processes of its own. Returns what ``prepare_here`` returns."""
    from edgekit.cache import Cache
    from edgekit.executors.local import InProcess
    from edgekit.recipe.schema import load_recipe
    from edgekit.train import stage as train

    send = executor_base.listener  # kept: the in-process conversions below reset the module's listener
    log = (lambda line: send("log", line)) if send is not None else (lambda line: None)
    # This process trains: TensorFlow at train.threads, as the build's own process would be. A
    # worker's TensorFlow keeps the threads of its first op for good, so say when it cannot.
    wanted = load_recipe(recipe_path).train.resolved_threads()
    running = train.configure_tensorflow(wanted)
    if running != wanted:
        log(f"[prepare] this worker's TensorFlow runs {running} intra-op thread(s), fixed by its first task; "
            f"train.threads asks for {wanted}: training and fine-tuning here use {running}")
    return prepare_here(recipe_path, Path(run_dir), InProcess(), Cache(root=Path(cache_root), enabled=not fresh),
                        tensorboard, scope, log, force=force)


def prepare_here(recipe_path, run_dir: Path, pool, cache, tensorboard: bool, scope: str, log, force: bool = False) -> dict:
    """The pipeline of the recipe at ``recipe_path`` up to the bench stage (``scope``), in this
    process, its conversions on ``pool``.

    Returns:
        {"variants": [{stem, model, format, precision, status, reason, metrics, size_bytes}],
        "models": the build's models (each compressed one's Keras metrics), "records": the task
        records of the work, "host", "pid", "seconds"}.
    """
    from edgekit.pipeline import build as pipeline
    from edgekit.recipe.schema import load_recipe

    started = time.time()
    recipe = load_recipe(recipe_path)
    first = len(pool.records)
    result = pipeline.build(recipe, Path(run_dir), log=log, cache=cache, force=force, executor=pool,
                            tensorboard=tensorboard, until=scope)
    records = []
    for record in pool.records[first:]:
        record = dict(record)
        if record.get("kind") == "build":  # the pipeline's own hold: this preparation
            record.update(task=f"prepare {recipe.name}", kind="prepare")
        records.append(record)
    if not any(r.get("kind") == "prepare" for r in records):  # all cached: no lock was taken, yet it ran here
        records.insert(0, {**task_record(f"prepare {recipe.name}", "prepare", None, None, started, 0.0), "end": time.time()})
    return {"variants": [summary(v) for v in result.results["prepared_variants"]],
            "models": [dict(m) for m in result.results["models"]], "records": records,
            "host": host_name(), "pid": os.getpid(), "seconds": round(time.time() - started, 2)}


def summary(variant) -> dict:
    """What a preparation says about one variant (picklable; no session)."""
    return {"stem": variant.stem, "model": variant.model, "format": variant.format, "precision": variant.precision,
            "status": variant.status, "reason": variant.reason, "metrics": dict(variant.metrics),
            "size_bytes": variant.size_bytes}


def wait(future: Future, name: str, run_dir: Path, log) -> dict | None:
    """The preparation's outcome, its lines written to ``run_dir/prepare.log`` and one line
    logged; None when it failed (the build then does the work itself).

    Raises:
        SchedulerLost: the cluster went away (the build writes its partial results).
    """
    try:
        outcome = future.result()
    except SchedulerLost:
        raise
    except Exception as exc:  # noqa: BLE001 - a dead worker, a failed task: the build does the work here
        outcome, error = None, one_line(exc)
    lines = getattr(future, "lines", [])
    if lines:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / PREPARE_LOG).write_text("".join(f"{line}\n" for line in lines))
    if outcome is None:
        log(f"[prepare] {name}: the task on the cluster failed ({error}); this process does its work instead")
        return None
    converted = sum(1 for v in outcome["variants"] if v["format"] != "keras" and v["status"] == "ok")
    log(f"[prepare] {name}: trained, fine-tuned and evaluated the Keras baseline"
        + (f", converted and evaluated {converted} variant(s)" if converted else "")
        + f" on {outcome['host']} (pid {outcome['pid']}) in {outcome['seconds']:.1f} s; this process times the rows")
    return outcome


def warm_up(threads: int, formats=()) -> threading.Thread:
    """Import TensorFlow (at ``threads``, benchmark.threads), what loads a Keras model and the
    runtimes of ``formats`` in this process in the background, while the workers prepare. A build whose work travelled still
    times its rows here, and each import (TensorFlow's 5 s on a quiet 2-core machine, over 20 s
    under load; onnxruntime's and OpenVINO's a few) would otherwise fall inside a timing, which
    holds the machine exclusively."""
    import importlib

    from edgekit.formats import FORMATS

    def run() -> None:
        try:
            from edgekit.train import stage as train

            train.configure_tensorflow(threads, if_unset=True)
            import tensorflow_model_optimization  # noqa: F401 - with tf_keras, what loads a stage's model (3 s here)
            import tf_keras  # noqa: F401

            for name in formats:
                for package in getattr(FORMATS.get(name), "runtime_packages", ()):
                    try:
                        importlib.import_module(package)
                        break
                    except ImportError:
                        continue
        except Exception:  # noqa: BLE001 - the bench stage imports them again and says what is wrong
            pass

    thread = threading.Thread(target=run, name="edgekit-tensorflow-import", daemon=True)
    thread.start()
    return thread


def before_build(pool, recipe, run_dir: Path, cache, prepared: Future | None, force: bool, tensorboard: bool,
                 log) -> Travelled | None:
    """At the start of a build: its preparation (``prepared``, or one submitted now with scope
    "models" when ``pool`` sends whole builds out), waited for; None when there is none."""
    if prepared is None:
        prepared = submit(pool, recipe, run_dir, cache, force=force, tensorboard=tensorboard, scope="models")
        if prepared is None:
            return None
        log(f"[prepare] {recipe.name}: training and the Keras baseline run on the cluster")
        warm_up(recipe.benchmark.threads, recipe.export.formats)
    outcome = wait(prepared, recipe.name, run_dir, log)
    if outcome is None:
        return None
    from edgekit.cache import Cache

    # With --fresh the worker replaced every entry it made: read them, and time every row again.
    readable = cache if cache.enabled else Cache(root=cache.root, enabled=True, events=cache.events, log=cache.log)
    return Travelled(readable, retime=not cache.enabled, records=outcome["records"])
