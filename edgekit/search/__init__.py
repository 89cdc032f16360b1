"""``edgekit search RECIPE``: the variant to ship, found by trying the recipe's ``search:`` space.

The parts, each a small module:

- ``spec``: the recipe section (space, objective, constraints, strategy);
- ``space``: the points of the space as trials, and each trial's recipe;
- ``strategy``: which trials to run (every point, or Optuna's TPE sampler);
- ``run``: each trial's short fine-tune, preparation and build, here or on a cluster's workers;
- ``results``: the search's results.json (trials, Pareto fronts, the pick and its margin);
- ``report``: its table, report.md and report.html.

Everything a search makes goes into one folder (default ``runs/<name>-search/``): results.json,
report.md, report.html, recipe.yaml (the pick's recipe: ``edgekit build`` it to reproduce the
pick's row), search.yaml (a copy of the search's recipe) and trials/ (each trial's recipe, run
directory and log). Every trial is a cached build, so running the same search again reuses every
finished trial (resume after Ctrl-C), and a larger ``max_trials`` or space runs only the new ones.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from edgekit.errors import EdgekitError, InputError, Interrupted, SchedulerLost

#: what a search writes into its folder: a folder holding only these is a search's
SEARCH_FILES = {"results.json", "latency.json", "report.md", "report.html", "plots", "recipe.yaml", "search.yaml",
                "trials", "build.log", "workers.log", "devices"}


def run_search(recipe_path: str | Path, out: str | Path | None = None, *, executor: str | None = None,
               strategy: str | None = None, max_trials: int | None = None, retime: bool = False,
               tensorboard: bool = False, verbose: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run the search of the recipe at ``recipe_path``; returns the search's results.json document.

    Args:
        out: the search's folder (default ``runs/<name>-search``).
        executor: ``--executor`` (None: ``$EDGEKIT_EXECUTOR``, else the local pool), or an
            executor made already (``edgekit.executors.schemes.make_executor``; left open).
        strategy, max_trials: override the recipe's ``search.strategy`` and ``search.max_trials``.
        retime: time every trial again (everything else from the cache).
        say: receives one line per trial and the pick.

    Raises:
        InputError: the recipe has no search section, or a bad --out.
        Interrupted: Ctrl-C (the trials finished so far are written).
    """
    from edgekit import environment
    from edgekit.cache import Cache
    from edgekit.pipeline import build_log as quiet
    from edgekit.pipeline import many
    from edgekit.recipe.reading import read_document
    from edgekit.recipe.schema import load_recipe
    from edgekit.search import results as results_module
    from edgekit.search import strategy as strategies
    from edgekit.search.run import Runner

    recipe = load_recipe(recipe_path)
    if recipe.search is None:
        raise InputError(f"{recipe_path}: no search: section; add one naming the space to try (see docs/search.md, "
                         "\"Searching for the variant to ship\"), or build the recipe with `edgekit build`")
    update = {k: v for k, v in (("strategy", strategy), ("max_trials", max_trials)) if v is not None}
    spec = recipe.search.model_copy(update=update)
    out_dir = Path(out) if out is not None else Path("runs") / f"{recipe.name}-search"
    _check_out(out_dir)
    document, _ = read_document(Path(recipe.path))
    walker, grid, invalid = strategies.make(spec, recipe)
    started, runs, interrupted = time.perf_counter(), [], False
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet.captured(out_dir, verbose=verbose) as capture:
        say = capture.on_terminal(say)
        say(f"[search] {recipe.name}: {len(grid)} distinct trial(s) in the space"
            + (f" ({invalid} point(s) build nothing)" if invalid else "")
            + f"; strategy {walker.name}" + (f", up to {walker.limit} trial(s)" if walker.name == "tpe" else ""))
        try:
            with many.Executors(executor, shared=True, logs=None if verbose else out_dir) as executors:
                pool = executors.for_recipe(recipe)
                runner = Runner(spec, recipe, document, out_dir / "trials", pool, Cache(), retime=retime,
                                tensorboard=tensorboard, log=say)
                batch = spec.parallel or (pool.slots() if runner.remote else 1)
                if walker.name == "grid":
                    batch = len(grid)  # all at once: the executor queues them
                while trials := walker.ask(batch):
                    for run in runner.run(trials):
                        runs.append(run)
                        walker.tell(run.trial, results_module.feedback(run, spec, runner.metric, runner.higher))
                        say(_trial_line(len(runs), run, spec, runner.metric, runner.higher))
        except KeyboardInterrupt:
            interrupted = True
        except EdgekitError as exc:  # Ctrl-C inside a trial's build, or the cluster went away
            if exc.exit_code != 130 and not isinstance(exc, SchedulerLost):
                raise
            interrupted = exc
        doc = results_module.assemble(runs, spec, recipe, out_dir, walker.name, invalid,
                                      time.perf_counter() - started, environment.collect(), bool(interrupted))
        _write(doc, runs, out_dir, recipe)
        from edgekit.search.report import pick_line

        say(f"[search] {pick_line(doc)}")
    if isinstance(interrupted, SchedulerLost):
        raise SchedulerLost(f"{interrupted}: the {len(runs)} finished trial(s) are in {out_dir / 'results.json'}; run "
                            "the same command again once the scheduler is back (finished trials come from the cache)")
    if interrupted:
        raise Interrupted(f"interrupted after {len(runs)} trial(s): partial results in {out_dir / 'results.json'}; "
                          "run the same command again to resume (finished trials come from the cache)")
    return doc


def _check_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; expected a folder for the search: choose another --out")
    if out_dir.is_dir():
        names = {p.name for p in out_dir.iterdir() if not p.name.endswith(".tmp")}
        if names and not names <= SEARCH_FILES:
            raise InputError(f"--out {out_dir} is a non-empty folder that is not an edgekit search's; choose an empty "
                             "or new folder (a search writes results.json, trials/ and its reports there)")


def _trial_line(number: int, run, spec, metric: str, higher: bool) -> str:
    from edgekit.report.cells import human_ms, human_size
    from edgekit.search.results import judge, trial_rows

    head = f"[search] trial {number} {run.trial.id} {run.trial.label}: {run.status}"
    if run.status != "ok":
        return f"{head}: {run.reason}"
    row = trial_rows(run, metric, higher).get(spec.target) or {}
    if not row:
        return f"{head}, but it has no row on {spec.target} (the target does not run this variant)"
    value, broken = judge(row, spec)
    lat = (row.get("latency_ms") or {}).get("p50")
    figures = [f"{metric} {row['metric']:.4f}" if row.get("metric") is not None else None,
               f"p50 {human_ms(lat)}" if lat else None, human_size(row["size_bytes"]) if row.get("size_bytes") else None]
    return f"{head}, {', '.join(f for f in figures if f)}" + (f" (breaks {'; '.join(broken)})" if broken else "")


def _write(doc: dict, runs: list, out_dir: Path, recipe) -> None:
    """results.json, latency.json (the pick's rows), recipe.yaml (the pick's recipe), search.yaml
    and the reports."""
    import json

    from edgekit.report import write_json
    from edgekit.search import report

    pick = doc["search"]["pick"]
    source = next((r for r in runs if pick and r.trial.id == pick["trial"]), None)
    latencies = {}
    if source is not None:
        try:
            every = json.loads((source.run_dir / "latency.json").read_text()).get("rows", {})
            latencies = {row["id"]: every[row["id"]] for row in doc["rows"] if row["id"] in every}
        except (OSError, ValueError):
            pass
        shutil.copyfile(source.recipe_path, out_dir / "recipe.yaml")
        shutil.rmtree(out_dir / "devices", ignore_errors=True)  # what recipe.yaml's device targets read
        if (source.recipe_path.parent / "devices").is_dir():
            shutil.copytree(source.recipe_path.parent / "devices", out_dir / "devices")
    else:
        (out_dir / "recipe.yaml").unlink(missing_ok=True)
    shutil.copyfile(recipe.path, out_dir / "search.yaml")
    write_json(out_dir / "latency.json", {"unit": "ms", "rows": latencies})
    write_json(out_dir / "results.json", doc)
    report.write(doc, out_dir)
