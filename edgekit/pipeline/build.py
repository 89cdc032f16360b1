"""Runs the stages of a build in order: data, train, compress, convert, evaluate, bench, report.

A failure inside one variant (compression, conversion, runtime, timing) marks that variant's
rows ``failed`` with a one-line reason and the build goes on; bad input stops at once.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from edgekit import disk, environment, interrupts, report
from edgekit.bench.profiles import Ahead, start_ahead
from edgekit.cache import Cache, fingerprint
from edgekit.compress.stage import compressed_variants
from edgekit.convert.stage import Exporter
from edgekit.environment import git_commit
from edgekit.errors import EdgekitError, InputError, Interrupted, SchedulerLost
from edgekit.evaluate.stage import keras_baseline
from edgekit.evaluate.worker import VariantBuilds
from edgekit.locks import Hold, OnDemand, waited_within, waits_by_label
from edgekit.report import results as results_file
from edgekit.report import write_json
from edgekit.train import stage as train_stage
from edgekit.variant import BuildContext, Variant

Log = Callable[[str], None]


@dataclass
class BuildResult:
    results: dict[str, Any]
    run_dir: Path

    @property
    def failed(self) -> bool:
        return any(row["status"] == "failed" for row in self.results["rows"])


@dataclass
class _State:
    """What a build has finished so far, so that Ctrl-C can still write it."""

    header: dict[str, Any] = field(default_factory=dict)
    #: every row the build will write, from the recipe alone (``plan``)
    plan: list[results_file.PlannedRow] = field(default_factory=list)
    not_produced: list[dict] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    #: each variant as soon as it is converted and evaluated: the exporter returns its
    #: variants only when all are done, and Ctrl-C must not lose the finished ones
    built: list[Variant] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    #: the variants finished so far in the worker processes (``Exporter.finished``)
    finished: Callable[[], list[Variant]] = list
    #: seconds of each stage finished so far (results.json ``stages``: ``results_file.stage_fields``)
    stages: dict[str, float] = field(default_factory=dict)
    #: probe processes started before the bench stage (``edgekit.bench.profiles.start_ahead``)
    ahead: Ahead = field(default_factory=Ahead)
    #: the executor's records of this build begin at this index (an executor can serve several builds)
    records_from: int = 0
    #: records of this build's work done before it, as a task of its own (``edgekit.pipeline.whole_build``)
    prior_records: list[dict] = field(default_factory=list)
    #: when the data stage began (after waiting for a preparation); None: when the build began
    data_clock: float | None = None
    #: (stage, start, end) of every wait of this process for this machine's CPU lock (``OnDemand``):
    #: results.json ``waits``, left out of ``stages``
    waits: list = field(default_factory=list)
    #: the targets whose rows were timed again because one was unstable (results.json ``retimed``)
    retimed: list = field(default_factory=list)
    #: takes the build's shared hold of this machine's CPU, if not held yet (``OnDemand.take``)
    take_shared: Callable[..., None] = field(default=lambda label=None: None, repr=False)

    def known_variants(self) -> list[Variant]:
        """Every variant so far, the baseline first, each once."""
        seen = {id(v) for v in self.variants}
        return self.variants + [v for v in self.built if id(v) not in seen]


def build(recipe, run_dir: Path, log: Log = print, cache: Cache | None = None, force: bool = False,
          retime: bool = False, executor=None, tensorboard: bool = True, until: str | None = None,
          prepared=None) -> BuildResult:
    """Run every stage of ``recipe`` and write results into ``run_dir``.

    Stage outputs come from ``cache`` when their keys are unchanged (``retime``: every
    measurement of the bench stage is taken again, the rest still comes from the cache). On
    Ctrl-C the finished rows are written, the unfinished ones marked, and ``Interrupted`` is
    raised; the same when the Dask scheduler goes away (``SchedulerLost``, exit 1). ``run_dir``
    ends up holding this run only; a non-empty folder that is no run directory is refused unless
    ``force``. ``executor``: where the tasks run (``edgekit.executors.schemes.make_executor``), shared by
    the builds of several recipes; default: one made for this build (``$EDGEKIT_EXECUTOR``) and
    closed at its end. ``tensorboard``: write TensorBoard logs of training and fine-tuning.

    ``until``: stop before the bench stage, having filled the cache and ``run_dir``:
    "models" (data, training, fine-tuning, the Keras baseline) or "variants" (also every
    conversion and evaluation); the result then holds ``prepared_variants`` and no rows. This is
    the task ``edgekit.pipeline.whole_build`` sends to a worker. ``prepared``: the future of that task,
    submitted earlier (several recipes, a search); with an executor whose ``whole_builds`` is
    set, the build otherwise submits it itself and waits for it first.
    """
    cache = cache if cache is not None else Cache()
    cache.log = log  # a discarded cache entry is one line of the build log
    _prepare_run_dir(run_dir, force)
    state = _State()
    # The plan comes from the recipe alone, before any stage runs: Ctrl-C at any point can
    # then still write every row, the unfinished ones marked interrupted.
    state.plan, state.not_produced = plan(recipe)
    from edgekit.evaluate import worker
    from edgekit.executors import schemes as executors

    # Where variants are converted and evaluated: worker processes, started at the first
    # variant the cache does not hold (a fully cached build starts none).
    owned = executor is None
    pool = executors.make_executor(worker.prepare, (recipe.benchmark.threads,), log=log) if owned else executor
    state.records_from = len(pool.records)
    try:
        with interrupts.watching():
            try:
                return _build(recipe, run_dir, log, cache, state, pool, retime, owned, tensorboard, until, prepared, force)
            except (KeyboardInterrupt, SchedulerLost) as exc:
                with interrupts.stopping():  # a second Ctrl-C does not cut the writing short
                    state.built = state.finished()  # what the workers finished before Ctrl-C
                    pool.close(now=True)  # the workers ignore SIGINT: stopped here, before anything is written
                    _write_partial(state, cache, recipe, run_dir, pool)
                if isinstance(exc, SchedulerLost):
                    raise SchedulerLost(
                        f"{exc}: partial results in {run_dir / 'results.json'} (unfinished rows marked); run the same "
                        "command again once the scheduler is back (or with --executor local), finished stages are cached"
                    ) from None
                raise Interrupted(
                    f"interrupted: partial results in {run_dir / 'results.json'} (unfinished rows marked); "
                    "run the same command again to resume, finished stages are cached"
                ) from None
            except Exception as exc:
                if disk.no_space(exc):  # whichever library met the full disk, whatever it raised
                    raise disk.full_disk_error(exc, _current_stage(state), run_dir,
                                               cache.root if cache.enabled else None) from None
                raise
    finally:
        if owned:
            pool.close(now=True)  # no worker outlives its build, whatever ended it
        state.ahead.close()  # nor a probe process


def plan(recipe) -> tuple[list[results_file.PlannedRow], list[dict[str, str]]]:
    """Every row a build of ``recipe`` writes, in the build's order, from the recipe alone
    (nothing is converted or measured); and the (model, format, precision) triples it will
    not produce, with why.

    The order is the bench stage's: targets in their kinds' order (cpu, gpu, then devices);
    within each, the Keras
    baseline, the base model's formats x precisions, then each exported compressed model's.
    A test holds this against the rows of a real build.

    Raises:
        DeviceProfileError: a device target has no valid profile.
    """
    from edgekit.targets import in_order, resolve, search_dirs

    variants, not_produced = planned_variants(recipe)
    targets = in_order(resolve(list(recipe.targets), search_dirs(recipe.path)))
    rows = [results_file.PlannedRow(f"{v.stem}@{name}", name, v) for name, target in targets.items() for v in variants
            if target.supports(v)]
    return rows, not_produced


def _probed_here(recipe) -> list[str]:
    """The recipe's targets whose rows are probed on this machine before they are timed
    (``Target.probes_here``: cpu)."""
    from edgekit.targets import resolve, search_dirs

    return [name for name, target in resolve(list(recipe.targets), search_dirs(recipe.path)).items()
            if target.probes_here]


def planned_variants(recipe) -> tuple[list[Variant], list[dict[str, str]]]:
    """Every variant a build of ``recipe`` makes, the Keras baseline first (``plan``'s order),
    and the (model, format, precision) triples it will not produce, with why."""
    from edgekit import compress

    # The exporter decides which (format, precision) pairs exist; it needs only the recipe here.
    exporter = Exporter(SimpleNamespace(recipe=recipe))
    variants = [Variant(format="keras", precision="fp32")]
    variants += [Variant(format=f.name, precision=p) for f, p in exporter.combinations("base", False)]
    for step in compress.plan(recipe.compress) if recipe.compress else []:
        if step.export:
            variants += [Variant(format=f.name, precision=p, model=step.name, parent=step.parent)
                         for f, p in exporter.combinations(step.name, step.quantized, step.precisions)]
    return variants, exporter.not_produced


#: the run directory's folder of per-layer quantization errors (one file per int8 variant)
LAYER_ERRORS_DIR = "layer_errors"

#: what a build writes into its run directory: a folder holding only these is a run directory
#: even without results.json (a build killed before it wrote one)
RUN_FILES = {"recipe.yaml", "artifacts", "model", "devices", "plots", "results.json", "manifest.json",
             "latency.json", "report.md", "report.html", "preprocess.json", results_file.LABELS_FILE, "profiles",
             LAYER_ERRORS_DIR, "vocab.txt", "tokenizer.json", "build.log", "tensorboard", "workers.log",
             "prepare.log"}



def _write_layer_errors(run_dir: Path, variants: list[Variant]) -> None:
    """layer_errors/<variant>.json: every layer's quantization error of each int8 variant
    (results.json rows list the worst few); an earlier run's files are removed first."""
    folder = run_dir / LAYER_ERRORS_DIR
    shutil.rmtree(folder, ignore_errors=True)
    for variant in variants:
        if variant.status == "ok" and variant.layer_error.get("layers"):
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / f"{variant.stem}.json", {"variant": variant.stem, **variant.layer_error})


def _prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse a folder that is not a run directory (unless ``force``); drop the device profiles
    of the previous run, which this one writes again for its own targets."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file; expected a folder for the run: choose another --out")
    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir() if not p.name.endswith(".tmp")}
    is_run = not names or bool(names & {"results.json", "manifest.json"}) or names <= RUN_FILES
    if not is_run and not force:
        raise InputError(
            f"--out {run_dir} is a non-empty folder that is not an edgekit run directory (no results.json or "
            f"manifest.json); choose an empty or new folder, or pass --force to build into it anyway"
        )
    shutil.rmtree(run_dir / "devices", ignore_errors=True)


def _remove_stale_artifacts(run_dir: Path, variants: list[Variant]) -> None:
    """Delete what an earlier run left in artifacts/ that no row of this run points at. Files a
    target wrote beside an artifact for one of its rows, named ``<row id>.*`` (``<stem>@<target>``:
    an mcu target's C array), stay with their artifact."""
    keep = {f.resolve() for variant in variants for f in variant.files}
    stems = {variant.stem for variant in variants if variant.files}
    folder = run_dir / "artifacts"
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.resolve() not in keep and not ("@" in path.name and path.name.split("@", 1)[0] in stems):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _check_outputs(run_dir: Path, variants: list[Variant]) -> None:
    """Every file an ok row points at must still be there (the run directory can be deleted or
    cleaned while the build runs; its rows would then describe nothing)."""
    missing = [f for v in variants if v.status == "ok" for f in v.files if not f.exists()]
    if missing:
        shown = ", ".join(str(f) for f in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise EdgekitError(
            f"the run directory {run_dir} lost files during the build (missing: {shown}); expected every artifact "
            "this build wrote to stay there: was the folder deleted or cleaned meanwhile? Run the build again"
        )


def _build(recipe, run_dir: Path, log: Log, cache: Cache, state: _State, pool, retime: bool = False,
           owned: bool = True, tensorboard: bool = True, until: str | None = None, prepared=None,
           force: bool = False) -> BuildResult:
    started = time.perf_counter()
    if until is None:  # the build's own work first, as a task on a worker where the executor says so
        from edgekit.pipeline import whole_build

        travelled = whole_build.before_build(pool, recipe, run_dir, cache, prepared, force, tensorboard, log)
        if travelled is not None:
            cache, retime, state.prior_records = travelled.cache, retime or travelled.retime, travelled.records
        state.data_clock = _stage_done(state, log, "prepare", started) if travelled is not None else None
    # Training, compressing and converting use this machine's CPU: the host lock is held shared
    # until the bench stage, so that no benchmark of another build on this machine is timed
    # meanwhile (edgekit.locks); the bench stage takes it exclusive for this machine's rows.
    # Both are taken at the first output the cache does not hold: a cached rebuild waits for nobody.
    with contextlib.ExitStack() as shared_phase:
        shared = shared_phase.enter_context(OnDemand(
            lambda: pool.hold(Hold(task=f"build {recipe.name}", kind="build"), log), state.waits))
        cache.before_compute = shared.take
        shared_phase.callback(setattr, cache, "before_compute", None)
        state.take_shared = shared.take
        return _build_and_bench(recipe, run_dir, log, cache, state, pool, retime, owned, tensorboard, started,
                                shared_phase.close, until)


def _build_and_bench(recipe, run_dir: Path, log: Log, cache: Cache, state: _State, pool, retime: bool, owned: bool,
                     tensorboard: bool, started: float, end_shared_phase: Callable[[], None],
                     until: str | None = None) -> BuildResult:
    if not cache.enabled:  # --fresh: every variant converts; a worker imports TensorFlow while this process trains
        pool.start()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "artifacts").mkdir(exist_ok=True)
    if recipe.path is not None and until is None:  # a preparation leaves them to the build that follows
        shutil.copyfile(recipe.path, run_dir / "recipe.yaml")
        # the copy's device targets resolve inside the run directory
        from edgekit.targets import profiles

        profiles.save_profiles(recipe.targets, profiles.search_dirs(recipe.path), run_dir / "devices")

    from edgekit.data import stage as data_stage

    # Data first: a bad data file fails in a second, before TensorFlow is even imported.
    log(f"[data] {recipe.data.source}")
    data, data_reused = data_stage.cached_dataset(recipe.data, recipe.seed, recipe.quantize.calibration_samples,
                                                  recipe.task, cache, output_tasks=recipe.outputs)
    data_key = _data_key(data)
    env = environment.collect()
    state.header = results_file.build_header(recipe, env, data.info, data_key, class_names=data.class_names)
    _write_labels(run_dir, recipe.task, data.class_names)
    from edgekit.data.text import write_vocabulary

    write_vocabulary(run_dir, data)  # vocab.txt + tokenizer.json for a text source (removed for others)
    log(f"[data] train {len(data.x_train)}, val {len(data.x_val)}, test {len(data.x_test)}, "
        f"calibration {len(data.x_calib)} (from train), input {data.inputs_summary}, {data.labels_summary}"
        f"{' (cached)' if data_reused else ''}")
    from edgekit.evaluate import sanity

    if small := sanity.small_validation_line(len(data.x_val)):
        log(f"[data] {small}")
    clock = _stage_done(state, log, "data", state.data_clock or started)

    # The trained model comes as a handle: loaded (and TensorFlow imported, at train.threads)
    # only when a stage below misses its cache entry and needs the model itself.
    model, flavour, model_key = train_stage.fp32_model(recipe, data, data_key, env["packages"], run_dir, cache, log,
                                                         on_train=pool.start, tensorboard=tensorboard)
    model_file = model.path  # the trained (bare) model: the workers wrap it as they convert
    from edgekit.data import in_model

    # The raw range the model's own first layers expect (Rescaling(1/255): pixels 0..255), for
    # every row and the int8 calibration; training fed it already where it trained the model.
    in_model.feed_for_build(data, model, recipe.data.source, log)
    if any("scaled_by" in record for record in in_model.records_of(data)):
        data_key = _data_key(data)  # what every later stage's key names: the samples as fed
    # what the artifacts take (input contracts); a generator's splits are its latent inputs by now (train.model_inputs)
    data.info["input_range"] = in_model.artifact_ranges(data)
    state.header = results_file.build_header(recipe, env, data.info, data_key, class_names=data.class_names)
    from edgekit.convert.stage import check_keep_float

    check_keep_float(recipe, model)  # an unknown layer name stops the build before any conversion
    restore = sanity.early_stopping(recipe, run_dir, len(data.x_val))
    if restore is not None:
        log(f"[train] {sanity.restored_line(restore)}")
    clock = _stage_done(state, log, "train", clock)  # TensorFlow's import included, when it happens
    (run_dir / "preprocess.json").unlink(missing_ok=True)  # an earlier run's; written again below if needed
    if data.embedded:
        # Every row takes raw features: the baseline is the trained model behind the fitted
        # normalization, the same model every artifact is converted from.
        log(f"[data] {data.normalization.kind} normalization embedded in every artifact: they take raw features")
    elif data.normalization is not None:
        from edgekit.convert.preprocess import PREPROCESS_FILE, preprocess_record

        write_json(run_dir / PREPROCESS_FILE, preprocess_record(data.normalization))
        log(f"[data] artifacts take normalized features: {PREPROCESS_FILE} holds the statistics and the formula")
    evaluated = time.perf_counter()
    baseline, baseline_outputs, model_block = keras_baseline(model, model_key, run_dir, recipe, data, data_key,
                                                             env["packages"], cache, log)
    baseline.seconds = {"evaluate": round(time.perf_counter() - evaluated, 3)}
    floor = sanity.floor(recipe.task, baseline.metrics, baseline_outputs, data.y_test, data.class_names, restore,
                         baseline.outputs)
    if floor is not None and floor["suspect"]:
        log(f"[sanity] {floor['reason']}; {sanity.CONSEQUENCE}")
    state.variants.append(baseline)
    from edgekit.evaluate.worker import release_memory

    release_memory()  # the baseline's batches, before the workers convert beside this process
    if until is None:  # the Keras row's probe imports TensorFlow while the variants convert
        for name in _probed_here(recipe):
            start_ahead(state.ahead, baseline, f"{baseline.stem}@{name}", recipe, data.x_test[: recipe.benchmark.inputs],
                        cache, before_launch=lambda: state.take_shared("evaluate"))

    versions = {k: v for k, v in env["packages"].items() if k != "edgekit"}
    ctx = BuildContext(recipe, data, baseline_outputs, run_dir, log, cache, data_key, versions)
    from edgekit.progress import Counter

    # counts every variant as it is finished (cached, converted and evaluated, failed or skipped)
    done_count = Counter(log, "converting + evaluating", len(planned_variants(recipe)[0]) - 1)
    builds = VariantBuilds(ctx, pool, done_count)
    exporter = Exporter(ctx, builds.start if until != "models" else _not_converted, done_count)
    state.finished = exporter.finished
    phase = time.perf_counter()  # convert + evaluate: in the workers, overlapping compress here
    try:
        # Each variant is converted and evaluated in a worker process (a converter that crashes
        # fails its own rows); compressed models train here meanwhile.
        exporter.export(model, "base", None, False, model_key, model_file=model_file)
        state.models.append({"name": "base", "parent": None, "step": "train" if recipe.model.file is None else "load",
                             "key": model_key, "path": results_file.relative_path(model_file, run_dir),
                             "keras_metrics": baseline.metrics})
        compressing = time.perf_counter()
        compressed_variants(model, model_key, ctx, exporter, state.models, tensorboard=tensorboard)
        if recipe.compress:
            _stage_done(state, log, "compress", compressing)
        else:
            state.stages["compress"] = 0.0
        state.variants += exporter.variants()
    finally:
        builds.close()
    _stop_if_disk_full(state.variants, "the convert stage", run_dir, cache)
    _variant_seconds(state, log, phase)
    end_shared_phase()
    if until is not None:  # prepared: the cache and the run directory hold it; the bench is the caller's
        return BuildResult({"rows": [], "prepared_variants": state.variants, "models": state.models,
                            "stages": state.stages}, run_dir)
    from edgekit.bench import stage as rows_stage

    # Every conversion has finished before the bench stage times anything on this machine's
    # CPU: timings never share it with other work of the build. The idle workers stay until
    # the bench is done: when this process's TensorFlow runs train.threads, the CPU rows are
    # timed in one of them, whose TensorFlow runs benchmark.threads (edgekit.bench.worker).
    clock = time.perf_counter()
    try:
        latencies, target_environments = rows_stage.benchmark(
            state.variants, data, recipe, log, baseline_outputs, cache=cache, rows=state.rows,
            latencies=state.latencies, retime=retime, tf_threads=_keras_threads(recipe), pool=pool, run_dir=run_dir,
            ahead=state.ahead, waits=state.waits, retimed=state.retimed,
        )
    finally:
        if owned:
            pool.close()
    clock = _stage_done(state, log, "bench", clock)
    rows = state.rows
    _stop_if_disk_full(rows, "the bench stage", run_dir, cache)
    _check_outputs(run_dir, state.variants)
    _remove_stale_artifacts(run_dir, state.variants)
    _write_layer_errors(run_dir, state.variants)
    from edgekit.convert.auto import annotate

    annotate(rows, exporter.auto_precisions)  # an automatic row's note says why it was added
    truth = _flag_rows(recipe, rows, floor, state.header)
    results = results_file.assemble(
        state.header, rows, run_dir,
        targets=target_environments,
        model={**model_block, "keras": flavour, "source": recipe.model.source},
        train={"threads": recipe.train.resolved_threads(), "tensorflow_threads": train_stage.tensorflow_threads()},
        models=state.models,
        not_produced=exporter.not_produced,
        auto_precisions=exporter.auto_precisions,
        reused=cache.reused_by_stage(),
        build_seconds=round(time.perf_counter() - started, 1),
        finished_at=round(time.time(), 3),
        commit=git_commit(recipe.path),
        tasks=_task_records(pool, state),
        waits=waits_by_label(state.waits),
        retimed=state.retimed,
        **truth,
        **results_file.stage_fields(state.stages),
    )
    try:
        from edgekit.report import contract

        contract.attach(results, run_dir)  # artifacts/<row id>.contract.json and each row's contract
        report.write(results, latencies, run_dir, cache=cache)
        _write_manifest(run_dir, results, state, cache)
        # The report stage's own time is known only once it is written: results.json gets it last.
        _stage_done(state, log, "report", clock)
        results.update(results_file.stage_fields(state.stages))
        write_json(run_dir / "results.json", results)
    except OSError as exc:
        if disk.no_space(exc):
            raise disk.full_disk_error(exc, "the report stage", run_dir, cache.root if cache.enabled else None) from None
        raise EdgekitError(
            f"could not write the results into {run_dir}: {exc.strerror or exc} ({exc.filename}); expected a "
            "writable run directory: check --out and run the build again"
        ) from None
    return BuildResult(results, run_dir)


def _current_stage(state: _State) -> str:
    """The stage a build is in: the first not yet done."""
    stage = next((name for name in ("data", "train", "convert", "bench") if name not in state.stages), "report")
    return f"the {stage} stage"


def _stop_if_disk_full(failed: list, doing: str, run_dir: Path, cache: Cache) -> None:
    """A variant or row that failed for lack of room (in a worker, a probe, TFLite Micro) stops
    the build as a full disk does anywhere else: the rows after it would fail the same way."""
    fields = [item if isinstance(item, dict) else vars(item) for item in failed]  # rows, or variants
    reason = next((f.get("reason") for f in fields if f.get("status") == "failed" and disk.no_space(f.get("reason"))), None)
    if reason is not None:
        raise disk.full_disk_error(reason, doing, run_dir, cache.root if cache.enabled else None)


def _flag_rows(recipe, rows: list[dict], floor: dict | None, header: dict) -> dict:
    """Mark a suspect baseline row and flag rows that lost much against it (``report.flags``);
    returns results.json's ``sanity`` and ``loss_flags`` (only those that apply)."""
    from edgekit.report import flags

    flags.mark_suspect(rows, floor)
    losses = flags.flag_losses(rows, header["primary_metric"], header["higher_is_better"], recipe.check.loss_tolerance)
    fields = {key: value for key, value in (("sanity", floor), ("loss_flags", losses)) if value is not None}
    # what the budgets judge, for the report's Pareto front and Results.best (check.gate.judged_metric)
    return {**fields, "gate_metric": recipe.check.defaults.metric or header["primary_metric"]}


def _data_key(data) -> str:
    """The fingerprint of every split, the calibration subset and the fitted normalization."""
    stats = (data.normalization.shift, data.normalization.scale) if data.normalization is not None else ()
    return fingerprint(data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test, data.x_calib, *stats)


def _not_converted(fmt, precision, model, name, parent, quantized, model_key, model_file=None):
    """``Exporter``'s start while preparing "models" only: the build that follows converts."""
    from edgekit.convert.stage import Ready

    return Ready(Variant(format=fmt.name, precision=precision, model=name, parent=parent, status="skipped",
                         reason="not converted while preparing"))


def _task_records(pool, state: _State) -> list[dict]:
    """results.json ``tasks``: what each task of this build held and when (``edgekit.locks``),
    in start order, times as Unix seconds. Preparations (``whole_build``) on a shared executor
    may be other builds': this build's own comes in ``prior_records``."""
    records = state.prior_records + [dict(r) for r in pool.records[state.records_from:] if r.get("kind") != "prepare"]
    for record in records:
        for name in ("start", "end"):
            if record.get(name) is not None:
                record[name] = round(record[name], 4)
    return sorted(records, key=lambda r: r.get("start") or 0.0)


def _write_partial(state: _State, cache: Cache, recipe, run_dir: Path, pool=None) -> None:
    """results.json (a valid results file) with every planned row: the finished ones as
    measured, the others marked ``interrupted``; latency.json with what was timed."""
    head = state.header or results_file.build_header(recipe, environment.collect())  # Ctrl-C before the data
    results = results_file.partial(
        head, state.plan, state.rows, state.known_variants(), run_dir, models=state.models,
        not_produced=state.not_produced, reused=cache.reused_by_stage(),
        build_seconds=round(time.perf_counter() - state.started, 1), **results_file.stage_fields(state.stages),
        waits=waits_by_label(state.waits),
        tasks=_task_records(pool, state) if pool is not None else [],
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "latency.json", {"unit": "ms", "rows": state.latencies})
    _write_manifest(run_dir, results, state, cache)


def _write_manifest(run_dir: Path, results: dict, state: _State, cache: Cache) -> None:
    """manifest.json: what produced each artifact, so any row can be traced back."""
    write_json(run_dir / "manifest.json", {
        "recipe": results.get("recipe"),
        "environment": results.get("environment"),
        "data_sha256": results.get("data", {}).get("sha256"),
        "cache": str(cache.root) if cache.enabled else None,
        "stages": cache.events,
        "models": state.models,
        "artifacts": [
            {"id": v.stem, "model": v.model, "parent": v.parent, "format": v.format, "precision": v.precision,
             "key": v.key, "files": [results_file.relative_path(f, run_dir) for f in v.files], "status": v.status,
             "seconds": v.seconds}
            for v in state.known_variants()
        ],
    })


def _write_labels(run_dir: Path, task: str, class_names: list[str]) -> None:
    """labels.txt (one class name per line, index order) for a classifier or a segmenter; an
    earlier run's is removed for the other tasks (regression outputs are no classes: their
    target names are in results.json ``data.targets``)."""
    from edgekit.data import checks as data_checks

    path = run_dir / results_file.LABELS_FILE
    if task not in results_file.LABELLED_TASKS or not class_names:  # none: labels of several outputs (data.outputs)
        path.unlink(missing_ok=True)
        return
    data_checks.check_class_names(class_names)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
    tmp.replace(path)


def _stage_done(state: _State, log: Log, stage: str, since: float) -> float:
    """Record and log (``[train] 12.3 s``) the wall seconds of ``stage`` since ``since``, less what
    this process waited meanwhile for another build's hold of this machine's CPU (results.json
    ``waits``, logged beside); returns now."""
    now = time.perf_counter()
    waited = waited_within(state.waits, since, now)
    state.stages[stage] = round(now - since - waited, 2)
    log(f"[{stage}] {state.stages[stage]:.1f} s" + (f" (and {waited:.1f} s waiting for another build's hold "
                                                     "of this machine's CPU)" if waited >= 0.05 else ""))
    return now


def _variant_seconds(state: _State, log: Log, phase: float) -> None:
    """The convert + evaluate phase: its wall time, and each step's seconds summed over the
    variants (measured in the worker process that ran it; they overlap compress and each other)."""
    variants = state.known_variants()
    for stage in ("convert", "evaluate"):
        state.stages[stage] = round(sum(v.seconds.get(stage, 0.0) for v in variants), 2)
    now = time.perf_counter()
    wall = state.stages["convert_evaluate_wall"] = round(now - phase - waited_within(state.waits, phase, now), 2)
    converted = sum(1 for v in variants if "convert" in v.seconds)
    log(f"[convert] {state.stages['convert']:.1f} s summed over {converted} variant(s)")
    log(f"[evaluate] {state.stages['evaluate']:.1f} s summed over {converted} variant(s) and the Keras baseline")
    log(f"[convert+evaluate] {wall:.1f} s wall (worker processes, alongside compress)")


def _keras_threads(recipe) -> int:
    """The intra-op threads the Keras baseline runs with in this process, for the bench stage:
    TensorFlow's, when it started here (training, a model loaded for a stage that missed its
    cache); else ``benchmark.threads``, which the baseline's session sets when it opens first."""
    return train_stage.tensorflow_threads() or recipe.benchmark.threads
