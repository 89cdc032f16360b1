"""edgekit for Python users: ``build``, ``load``, ``check`` and ``bench``, what the commands do,
returning objects instead of printing. The CLI is a thin layer over these.

    import edgekit

    result = edgekit.build("recipes/digits_cnn.yaml", out="runs/digits")
    result.to_pandas()                                  # one line per row (pandas: keras-edgekit[pandas])
    best = result.best(max_drop=0.01, target="cpu")     # the fastest row within the metric budget
    edgekit.check(result).passed                        # the recipe's budgets, as `edgekit check`

Nothing here imports TensorFlow until a build or a benchmark needs it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: float rounding in recomputed metrics: a drop of exactly the budget holds
_EPS = 1e-9


@dataclass
class Results:
    """A run's results.json as Python values.

    Attributes:
        results: the results.json document (the contract, see docs/results.md).
        run_dir: the run directory, or None (results of ``bench`` without ``out``).
    """

    results: dict[str, Any]
    run_dir: Path | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every row: one (model, format, precision, target) with its status, metrics, size and latency."""
        return self.results["rows"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The rows whose status is ``failed`` (each with its ``reason``)."""
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The baseline row (the Keras fp32 model on the first target), if the results have one."""
        return next((row for row in self.rows if row["id"] == self.results.get("baseline")), None)

    @property
    def metric(self) -> str:
        """The recipe's primary metric (``accuracy``, ``mae``, ``snr_db``, ...)."""
        return self.results["primary_metric"]

    @property
    def higher_is_better(self) -> bool:
        from edgekit.results.metrics import higher_is_better

        return higher_is_better(self.results)

    def to_pandas(self):
        """A pandas DataFrame, one line per row: id, model, format, precision, target, status,
        size_bytes, the primary metric and its delta, p50/p90/p99 in ms, speedup, reason.

        Raises:
            ImportError: pandas is not installed (``pip install 'keras-edgekit[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Results.to_pandas() needs pandas: pip install 'keras-edgekit[pandas]'") from None
        return pd.DataFrame([self._flat(row) for row in self.rows]).set_index("id")

    def _flat(self, row: dict) -> dict[str, Any]:
        lat = row.get("latency_ms") or {}
        return {"id": row["id"], "model": row.get("model"), "format": row.get("format"), "precision": row.get("precision"),
                "target": row.get("target"), "status": row["status"], "size_bytes": row.get("size_bytes"),
                self.metric: (row.get("metrics") or {}).get(self.metric),
                f"delta_{self.metric}": (row.get("delta") or {}).get(self.metric),
                "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"),
                "speedup": row.get("speedup_vs_baseline"), "reason": row.get("reason")}

    def drop(self, row: dict, metric: str | None = None) -> float | None:
        """How much ``row`` lost against the baseline on ``metric`` (default: the primary one),
        as a positive number when it got worse: baseline minus row for a higher-is-better metric
        (accuracy), row minus baseline for a lower-is-better one (mae, mse). None where the row
        has no delta for it."""
        metric = metric or self.metric
        delta = (row.get("delta") or {}).get(metric)
        if delta is None:
            return None
        from edgekit.results.metrics import higher_is_better

        return -delta if higher_is_better(self.results, metric) else delta

    def best(self, max_drop: float | None = 0.01, target: str = "cpu", metric: str | None = None) -> dict | None:
        """The fastest ok row on ``target`` (lowest p50) whose metric is at most ``max_drop`` worse
        than the baseline's, or None when no row qualifies. ``metric`` defaults to the one the
        recipe's budgets judge (``check: defaults: metric``, e.g. top1_agreement), else the
        primary one; an SNR against a reference at its cap has no drop (task fidelity: pass
        ``metric="top1_agreement"`` or ``max_drop=None``).

        ``max_drop`` is in the metric's own units (0.01 = one point of accuracy) and always means
        "worse by": for lower-is-better metrics (mae, mse, rmse, loss) a row may be at most
        ``max_drop`` *higher* than the baseline. ``max_drop=None`` ignores the metric (the fastest
        row; results of ``bench`` have no metric). Rows without a delta for the metric are left
        out otherwise.
        """
        candidates = []
        for row in self.rows:
            p50 = (row.get("latency_ms") or {}).get("p50")
            if row["status"] != "ok" or row.get("target") != target or p50 is None:
                continue
            if max_drop is not None:
                from edgekit.results.metrics import judged_metric

                drop = self.drop(row, metric or judged_metric(self.results))
                if drop is None or drop > max_drop + _EPS:
                    continue
            candidates.append((p50, row))
        return min(candidates, key=lambda item: item[0])[1] if candidates else None

    def __repr__(self) -> str:
        name = (self.results.get("recipe") or {}).get("name")
        return f"Results({name!r}, {len(self.rows)} rows, {len(self.failed)} failed, run_dir={str(self.run_dir)!r})"


def load(path: str | Path) -> Results:
    """The results of a run: a run directory or its results.json.

    Raises:
        InputError: no readable results.json there.
    """
    from edgekit.results.read import load_results

    path = Path(path)
    results = load_results(path)
    return Results(results, path if path.is_dir() else path.parent)


def _recipe_of(recipe, holder: list) -> Any:
    """A loaded Recipe from a path, a Recipe or a dict. A dict (or a Recipe made in Python, with
    no file) is written as YAML into a temporary folder first, since a build copies its recipe
    file into the run directory; its relative data.path and model.file start at the current
    folder. ``holder`` gets the temporary folder, to remove after the build."""
    import yaml

    from edgekit.recipe.schema import Recipe, load_recipe

    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe)
    if isinstance(recipe, Recipe):
        if recipe.path is not None:
            return recipe
        recipe = recipe.model_dump(mode="json", exclude_unset=True)
    if not isinstance(recipe, dict):
        from edgekit.errors import InputError

        raise InputError(f"recipe: expected a recipe file path, a Recipe or a dict, received {type(recipe).__name__}")
    document = {**recipe}
    for section, key in (("data", "path"), ("model", "file")):
        part = document.get(section)
        if isinstance(part, dict) and part.get(key) and not Path(part[key]).is_absolute():
            document[section] = {**part, key: str(Path(part[key]).resolve())}
    folder = Path(tempfile.mkdtemp(prefix="edgekit-recipe-"))
    holder.append(folder)
    path = folder / f"{document.get('name') or 'recipe'}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_recipe(path)


def build(recipe, out: str | Path | None = None, *, fresh: bool = False, force: bool = False, retime: bool = False,
          tensorboard: bool = True, verbose: bool = False, log: Callable[[str], None] | None = None,
          executor=None, preflight: bool = True, prepared=None) -> Results:
    """Build every variant of ``recipe`` and measure each, as ``edgekit build`` does.

    Args:
        recipe: a recipe file path, a ``edgekit.recipe.schema.Recipe`` or a dict of the same sections.
        out: the run directory (default ``runs/<recipe name>``).
        fresh: ignore the stage cache (``--fresh``).
        force: build into a non-empty folder that is not a run directory (``--force``).
        retime: time every row again, the rest from the cache (``--retime``).
        tensorboard: write TensorBoard logs under ``out/tensorboard`` (``--no-tensorboard``: False).
        verbose: let TensorFlow, tf2onnx, NNCF and LiteRT print live (``-v``); by default their
            output goes into ``out/build.log`` and only edgekit's own lines are shown.
        log: receives each of edgekit's progress lines (default: a progress bar on a terminal,
            plain lines elsewhere, on stderr); called with ``sys.stdout`` / ``sys.stderr`` on the
            terminal.
        executor: where the tasks run (``edgekit.executors.schemes.make_executor``; default: worker
            processes made for this build). Workers it started before this build keep the
            descriptors of the build they started in (``edgekit.pipeline.build_log``).
        preflight: first check that ``out`` and the stage cache are writable and say which
            recipe paths leave the recipe's folder (``edgekit build`` does this for every
            recipe before the first build, and passes False).
        prepared: the future of this build's preparation on ``executor``'s workers, submitted
            earlier (``edgekit.pipeline.whole_build.submit``: several recipes, a search's trials).

    Returns:
        The run's Results (``result.failed`` lists failed rows; a build with failed rows still
        returns).

    Raises:
        EdgekitError: bad recipe or input (its ``exit_code`` is the command's), or Interrupted.
    """
    from edgekit.pipeline import build_log as quiet

    temporary: list[Path] = []
    try:
        loaded = _recipe_of(recipe, temporary)
        run_dir = Path(out) if out is not None else Path("runs") / loaded.name
        if preflight:
            _preflight(loaded, run_dir, cache_used=not fresh)
        _quiet_tensorflow()
        with quiet.captured(run_dir, verbose=verbose) as capture:
            return _run_build(loaded, run_dir, capture, fresh, force, retime, tensorboard, log, executor, prepared)
    finally:
        import shutil

        for folder in temporary:
            shutil.rmtree(folder, ignore_errors=True)


def _run_build(recipe, run_dir: Path, capture, fresh: bool, force: bool, retime: bool, tensorboard: bool,
               log, executor, prepared=None) -> Results:
    from edgekit.cache import Cache
    from edgekit.pipeline import build as pipeline
    from edgekit.progress import BuildLog

    own_log = BuildLog(stream=capture.terminal) if log is None else None
    try:
        result = pipeline.build(recipe, run_dir, log=own_log or capture.on_terminal(log), cache=Cache(enabled=not fresh),
                                force=force, retime=retime, executor=executor, tensorboard=tensorboard,
                                prepared=prepared)
    finally:
        if own_log is not None:
            own_log.close()
    if tensorboard:
        from edgekit.train import tensorboard as tensorboard_logs

        tensorboard_logs.write_results(result.results, run_dir / tensorboard_logs.TENSORBOARD_DIR)
    return Results(result.results, run_dir)


def _quiet_tensorflow() -> None:
    import os

    # TensorFlow's C++ start-up notes (oneDNN, CUDA probes) below warnings; the rest is captured.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _preflight(recipe, run_dir: Path, cache_used: bool) -> None:
    """Fail now, in one line, for what would otherwise fail after training (``edgekit build``'s checks)."""
    import click

    from edgekit.pipeline import preflight

    preflight.before_build(recipe, run_dir, cache_used, say=lambda line: click.echo(line, err=True))


def _results_path(results) -> Path:
    if isinstance(results, Results):
        if results.run_dir is None:
            from edgekit.errors import InputError

            raise InputError("check: these results have no run directory; pass a run directory or results.json path")
        return results.run_dir
    return Path(results)


def check(results, baseline: str | Path | None = None, recipe: str | Path | None = None,
          junit: str | Path | None = None, history: str | None = None, window: int = 10,
          allow_suspect: bool = False, allow_unjudged: bool = False):
    """Check a run against its recipe's budgets and a stored baseline, as ``edgekit check``.

    Args:
        results: a Results (of a run directory), a run directory or a results.json.
        baseline: a file from ``edgekit baseline save`` or a results.json, for regressions.
        recipe: the recipe whose ``check:`` section holds the budgets (default: the run's copy).
        junit: also write JUnit XML here.
        history: a results store (a SQLite path or database URL, ``edgekit.history.store``):
            judge each row against its last ``window`` runs there too (``edgekit.history.window``).
        window: how many earlier runs of a row the history check reads.
        allow_suspect: pass a build whose Keras baseline is suspect (not above the majority class
            or chance of its test split; ``--allow-suspect``) instead of failing it.
        allow_unjudged: pass although a latency budget could not be judged (a row's timing was
            unstable; ``--allow-unjudged``); by default ``passed`` is False then.

    Returns:
        ``edgekit.check.gate.CheckReport``: ``passed``, ``failures`` (each an Outcome with row,
            budget, value, limit and detail), ``unstable`` (the latency budgets not judged),
            ``outcomes`` and ``warnings``.
    """
    from edgekit.check import gate, output

    report = gate.run_check(_results_path(results), Path(baseline) if baseline else None,
                            Path(recipe) if recipe else None, history=history, window=window,
                            allow_suspect=allow_suspect, allow_unjudged=allow_unjudged)
    if junit is not None:
        output.write_junit(report, Path(junit))
    return report


def bench(files: Iterable[str | Path], targets: Iterable[str] = ("cpu",), *, runs: int = 100, warmup: int = 10,
          min_time_s: float = 0.0, threads: int = 1, samples: int = 16, inputs: str | Path | None = None,
          profile: bool = True, devices: str | Path | None = None, out: str | Path | None = None,
          log: Callable[[str], None] | None = None, shapes: Iterable[str] = (), verbose: bool = False) -> Results:
    """Time existing model files (any format of ``edgekit formats``) on each target, as ``edgekit bench``.

    Args:
        files: the model files (.tflite, .onnx, .xml, .keras, ...).
        targets: cpu, or device names (devices/NAME.yaml).
        runs: timed runs per file and target (at least).
        warmup: untimed runs first.
        min_time_s: time for at least this long too.
        threads: intra-op threads of every runtime.
        samples: distinct inputs cycled through (random, or the first of ``inputs``).
        inputs: an .npz with the samples: one array per model input, named after it (for a model
            of one input also x, x_test or a single array); each input's own dtype.
        profile: per-op profile and peak memory of each file here.
        devices: the folder of device profiles (default ./devices).
        out: also write the results (results.json layout) to this file.
        log: progress lines (default: stderr).
        shapes: free dimensions fixed, ``"NAME=1x3x320x320"`` each (as ``--shape``).
        verbose: let the runtimes print live (``-v``); by default what they print (LiteRT's
            ``Created TensorFlow Lite XNNPACK delegate``, ...) goes into ``out``'s ``.log`` file
            beside it, or nowhere without ``out`` (``edgekit.pipeline.build_log``).

    Returns:
        Results (no metrics: ``best(max_drop=None)`` is the fastest file); ``run_dir`` is the
        folder of ``out``, or None.
    """
    import click

    from edgekit.bench import files as filebench
    from edgekit.targets.profiles import search_dirs

    spec = filebench.BenchSpec(warmup=warmup, runs=runs, min_time_s=min_time_s, threads=threads, inputs=samples,
                               profile=profile)
    from edgekit.pipeline import build_log as quiet

    dirs = [Path(devices)] if devices is not None else search_dirs()
    chatter = Path(out).with_name(Path(out).stem + ".log") if out is not None else None
    with quiet.captured_file(chatter, verbose=verbose) as capture:
        results, latencies = filebench.benchmark_files(
            [Path(f) for f in files], list(targets), spec, Path(inputs) if inputs else None, dirs,
            log=capture.on_terminal(log or (lambda line: click.echo(line, err=True))), shapes=list(shapes))
    if out is not None:
        from edgekit import report
        from edgekit.report.results import relative_path

        out = Path(out)
        # Row paths as in a run directory's results.json: relative to the folder the file is in.
        rows = [{**row, "path": relative_path(row.get("path"), out.parent)} for row in results["rows"]]
        report.write_json(out, {**results, "rows": rows, "latencies_ms": latencies})
    return Results(results, Path(out).parent if out is not None else None)
