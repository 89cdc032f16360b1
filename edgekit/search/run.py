"""Running a search's trials, each a normal cached build of its own recipe, in three steps:

1. early stop (a trial that fine-tunes, with ``search.early_stop``): its probe recipe (the same
   trial, fine-tuned for ``early_stop.epochs``) is built up to its models only; a Keras metric
   past ``max_metric_drop + slack`` stops the trial there, unconverted and untimed;
2. preparation: the trial's build up to the bench stage (trained, fine-tuned, converted,
   evaluated: ``edgekit.pipeline.whole_build``); a variant past ``max_metric_drop`` or ``max_size_bytes``
   is rejected, never timed;
3. the build itself (``edgekit.api.build``): every stage from the cache, the rows timed here.

Steps 1 and 2 run on a worker where the executor sends whole builds out (a Dask cluster: as
many trials at once as asked for), else in this process with the executor's worker processes
converting. Step 3 always runs in this process, one trial after another: a timing has the
machine to itself (the host lock), so timing is serial however many workers there are.

On a cluster, trials that share a model do not each make it: the base model is trained by one
task first, and each compressed model (and its short fine-tune) by the first trial that needs
it while the trials sharing it wait; then their conversions run at once.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from edgekit import interrupts
from edgekit.errors import EdgekitError, SchedulerLost, one_line
from edgekit.pipeline import whole_build
from edgekit.search import space as space_module
from edgekit.search.space import Trial
from edgekit.tasks import TASKS


@dataclass
class TrialRun:
    """One trial's files and what became of it."""

    trial: Trial
    recipe_path: Path
    run_dir: Path
    probe_path: Path | None = None
    #: ok | stopped (early) | rejected (before timing) | failed | interrupted | pending
    status: str = "pending"
    reason: str | None = None
    #: the short fine-tune: {"epochs", "metric", "drop"}
    probe: dict | None = None
    #: the preparation's view of the variant: {"metric", "drop", "size_bytes", "host", "pid", "seconds"}
    prepared: dict | None = None
    #: results.json of the trial's build (ok and failed trials that were built)
    results: dict | None = None
    seconds: float = 0.0
    #: seconds of the preparation tasks this trial ran (its own, and the shared ones it ran first)
    worker_seconds: float = 0.0
    future: object = None
    lines: list[str] = field(default_factory=list)


class Runner:
    """Runs batches of trials of one search (``run``), writing each trial's recipe first.

    Args:
        spec: the search section.
        recipe: the search's recipe (loaded); ``document`` its file as plain values.
        folder: where trial recipes, run directories and logs go (``<out>/trials``).
        executor: the search's executor (shared by every trial).
        cache: the stage cache (preparations and builds read and fill it).
        retime: time every trial again, whatever the cache holds.
        log: receives one line per trial and step.
    """

    def __init__(self, spec, recipe, document: dict, folder: Path, executor, cache, *, retime: bool = False,
                 tensorboard: bool = False, log: Callable[[str], None] = print):
        self.spec, self.recipe, self.document, self.folder = spec, recipe, document, folder
        self.executor, self.cache, self.retime, self.tensorboard, self.log = executor, cache, retime, tensorboard, log
        self.remote = bool(getattr(executor, "whole_builds", False))
        task = TASKS[recipe.task]
        self.metric, self.higher = task.primary_metric, task.higher_is_better
        self._file_lock = threading.Lock()
        self._shared_lock = threading.Lock()
        self._shared_work: dict[str, Future] = {}
        space_module.prepare_folder(folder, recipe)
        if self.remote:
            whole_build.warm_up(recipe.benchmark.threads, space_module.dimensions(spec.space, recipe)["format"])

    def write(self, trial: Trial) -> TrialRun:
        """The trial's recipe (and its probe's) on disk: ``<folder>/<id>.yaml``."""
        doc = space_module.document(self.document, self.recipe, trial, self.spec)
        path = self.folder / f"{trial.id}.yaml"
        _write_yaml(path, doc)
        run = TrialRun(trial, path, self.folder / trial.id)
        (self.folder / f"{trial.id}.log").write_text("")  # this search's lines only
        early = self.spec.early_stop
        if early is not None and trial.compress and self.spec.constraints.max_metric_drop is not None:
            entry = doc["compress"][0]
            if any(step and step.get("epochs", 0) > early.epochs for step in entry.values() if isinstance(step, dict)):
                probe = {**doc, "name": f"{doc['name']}-probe",
                         "compress": [{k: ({**v, "epochs": min(v.get("epochs", early.epochs), early.epochs)}
                                           if isinstance(v, dict) else v) for k, v in entry.items()}]}
                run.probe_path = self.folder / f"{trial.id}.probe.yaml"
                _write_yaml(run.probe_path, probe)
        return run

    def run(self, trials: list[Trial]) -> list[TrialRun]:
        """Every trial of the batch to its end; on a cluster they prepare at once."""
        runs = [self.write(trial) for trial in trials]
        if not self.remote:
            for run in runs:
                self._ahead(run)
                self._build(run)
            return runs
        threads = ThreadPoolExecutor(max_workers=max(1, len(runs)), thread_name_prefix="edgekit-trial")
        futures = {threads.submit(self._ahead, run): run for run in runs}
        try:
            for done in as_completed(futures):
                done.result()
                self._build(futures[done])
        finally:
            # Not waiting on Ctrl-C: the threads wait for tasks that closing the executor cancels.
            threads.shutdown(wait=False, cancel_futures=True)
        return runs

    # -- steps 1 and 2: here, or as tasks on the cluster --

    def _ahead(self, run: TrialRun) -> None:
        started = time.perf_counter()
        try:
            if self.remote:  # the base model once, before any trial needs it
                self._shared("base", lambda: self._task(self._base_recipe(run), self.folder / "base", "models", run)[0])
            if run.probe_path is not None and not self._probe(run):
                return
            if self.remote and run.trial.compress:  # each compressed model once
                self._shared(json.dumps(run.trial.compress, sort_keys=True),
                             lambda: self._task(run.recipe_path, run.run_dir, "models", run)[0])
            self._prepare(run)
        except (KeyboardInterrupt, SystemExit, SchedulerLost):
            raise
        except EdgekitError as exc:
            if exc.exit_code == 130:  # Ctrl-C, which the pipeline turned into its partial results
                raise
            run.status, run.reason = "failed", exc.format_message()
        except Exception as exc:  # noqa: BLE001 - a trial that cannot build fails alone
            interrupts.reraise_if_interrupted()
            run.status, run.reason = "failed", one_line(exc)
        finally:
            run.seconds += time.perf_counter() - started

    def _task(self, path: Path, run_dir: Path, scope: str, run: TrialRun) -> tuple[dict, object]:
        """A preparation of the recipe at ``path``: (its outcome, the future a build can take)."""
        if self.remote:
            from edgekit.recipe.schema import load_recipe

            future = whole_build.submit(self.executor, load_recipe(path), run_dir, self.cache,
                                        tensorboard=self.tensorboard, scope=scope)
            outcome = future.result()
            run.lines += getattr(future, "lines", [])
        else:
            outcome, future = whole_build.prepare_here(path, run_dir, self.executor, self.cache, self.tensorboard,
                                                       scope, run.lines.append), None
        run.worker_seconds += outcome["seconds"]
        return outcome, future

    def _shared(self, key: str, make: Callable[[], dict]) -> dict:
        """``make()`` once per ``key`` for every trial of the search: the first caller runs it, the
        others wait for its outcome (trials on a cluster would otherwise make a shared model at once)."""
        with self._shared_lock:
            future = self._shared_work.get(key)
            mine = future is None
            if mine:
                future = self._shared_work[key] = Future()
        if mine:
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result()

    def _base_recipe(self, run: TrialRun) -> Path:
        """A recipe of the base model alone (what every trial trains first): ``run``'s without its
        compress entry, at fp32."""
        doc = {k: v for k, v in yaml.safe_load(run.recipe_path.read_text()).items() if k != "compress"}
        quantize = {k: v for k, v in doc.get("quantize", {}).items() if k != "max_drop"}
        path = self.folder / "base.yaml"
        _write_yaml(path, {**doc, "name": f"{self.recipe.name[:80]}-base", "quantize": {**quantize, "precisions": ["fp32"]}})
        return path

    def _baseline_metric(self, outcome: dict):
        """The Keras baseline's value of the searched metric in a preparation's outcome."""
        return next(v for v in outcome["variants"] if v["format"] == "keras")["metrics"].get(self.metric)

    def _probe(self, run: TrialRun) -> bool:
        """The short fine-tune; False when it stopped the trial."""
        key = "probe " + json.dumps(run.trial.compress, sort_keys=True)
        outcome = self._shared(key, lambda: self._task(run.probe_path, self.folder / f"{run.trial.id}.probe", "models",
                                                       run)[0])
        base = self._baseline_metric(outcome)
        model = next((m for m in outcome["models"] if m["name"] == run.trial.model), {})
        value = (model.get("keras_metrics") or {}).get(self.metric)
        if value is None or base is None:
            run.status, run.reason = "failed", f"the short fine-tune failed: {model.get('reason') or 'no metric'}"
            return False
        early = self.spec.early_stop
        drop = self._drop(value, base)
        run.probe = {"epochs": early.epochs, "metric": value, "drop": drop}
        budget = self.spec.constraints.max_metric_drop + early.slack
        if drop > budget + 1e-9:
            run.status = "stopped"
            run.reason = (f"after {early.epochs} epoch(s) of fine-tuning the Keras {self.metric} is {value:.4g}, "
                          f"{drop:.4g} worse than the baseline: past max_metric_drop + slack ({budget:.4g})")
            return False
        return True

    def _prepare(self, run: TrialRun) -> None:
        outcome, run.future = self._task(run.recipe_path, run.run_dir, "variants", run)
        base = self._baseline_metric(outcome)
        variant = next((v for v in outcome["variants"] if v["stem"] == run.trial.stem), None)
        if variant is None or variant["status"] != "ok":
            run.status = "failed"
            run.reason = variant["reason"] if variant else f"the build made no {run.trial.stem} variant"
            return
        value = variant["metrics"].get(self.metric)
        drop = self._drop(value, base) if value is not None and base is not None else None
        run.prepared = {"metric": value, "drop": drop, "size_bytes": variant["size_bytes"], "host": outcome["host"],
                        "pid": outcome["pid"], "seconds": outcome["seconds"]}
        limits = self.spec.constraints
        if drop is not None and limits.max_metric_drop is not None and drop > limits.max_metric_drop + 1e-9:
            run.status = "rejected"
            run.reason = f"{self.metric} drop {drop:.4g} > max_metric_drop {limits.max_metric_drop:g}: not timed"
        elif limits.max_size_bytes is not None and (variant["size_bytes"] or 0) > limits.max_size_bytes:
            run.status = "rejected"
            run.reason = f"size {variant['size_bytes']} bytes > max_size_bytes {limits.max_size_bytes}: not timed"

    def _drop(self, value: float, base: float) -> float:
        return base - value if self.higher else value - base

    # -- step 3: here, one trial at a time --

    def _build(self, run: TrialRun) -> None:
        from edgekit import api

        self._save_log(run)
        if run.status != "pending":
            return
        started = time.perf_counter()
        try:
            result = api.build(run.recipe_path, run.run_dir, retime=self.retime, tensorboard=self.tensorboard,
                               log=lambda line: self._append(run, line), executor=self.executor, preflight=False,
                               prepared=run.future)
        except EdgekitError as exc:
            if exc.exit_code == 130 or isinstance(exc, SchedulerLost):
                run.status, run.reason = "interrupted", "interrupted"
                raise
            run.status, run.reason = "failed", exc.format_message()
            return
        finally:
            run.seconds += time.perf_counter() - started
            run.future = None
        run.results = result.results
        rows = [r for r in result.rows if r["id"].split("@")[0] == run.trial.stem]
        if rows and all(r["status"] != "ok" for r in rows):
            run.status, run.reason = "failed", rows[0].get("reason")
        else:
            run.status = "ok" if rows else "failed"
            run.reason = None if rows else f"the build made no {run.trial.stem} row"

    def _save_log(self, run: TrialRun) -> None:
        if run.lines:
            self._append(run, None)

    def _append(self, run: TrialRun, line: str | None) -> None:
        """The trial's log, ``<folder>/<id>.log``: its preparation's lines, then its build's."""
        with self._file_lock, open(self.folder / f"{run.trial.id}.log", "a", encoding="utf-8") as out:
            for text in run.lines:
                out.write(f"{text}\n")
            run.lines.clear()
            if line is not None:
                out.write(f"{line}\n")


def _write_yaml(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# written by `edgekit search`: one trial of the search (edgekit build it to reproduce its row)\n"
                   + yaml.safe_dump(document, sort_keys=False))
    tmp.replace(path)
