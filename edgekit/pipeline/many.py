"""Builds of several recipes (``edgekit build R1.yaml R2.yaml`` or a folder): one executor per
benchmark.threads value shared by every build, one outcome per recipe, one summary and exit code.

The recipes are built one after another, each into ``<out>/<name>/`` as if built alone; they share
the stage cache and the executors' warm workers. A recipe whose build fails is recorded and the
next one builds; Ctrl-C or a lost Dask scheduler stops the rest (``not built``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgekit.errors import EdgekitError, InputError, SchedulerLost
from edgekit.report.summary import RecipeOutcome, summary


def recipe_paths(given) -> list[Path]:
    """The recipe files named: a folder stands for the *.yaml / *.yml files directly in it.

    Raises:
        InputError: a folder without a recipe file.
    """
    paths: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise InputError(f"{path}: a folder with no recipe in it (expected *.yaml files); name recipe files "
                                 "or a folder of them")
            paths += found
        else:
            paths.append(path)
    return paths


class Executors:
    """The executors of ``edgekit build``: one per benchmark.threads value (a worker's TensorFlow
    keeps the thread count it started with), shared by the builds of several recipes; closed at
    the end. For one recipe on the default executor there is none: the build makes its own.
    ``logs``: the folder of ``workers.log``, where the workers' libraries print (an executor
    outlives each build's build.log); None: they print live (``-v``)."""

    def __init__(self, spec: str | None, shared: bool = False, logs: Path | None = None):
        self.spec, self.shared, self.logs, self._made = spec, shared, logs, {}

    def __enter__(self) -> Executors:
        return self

    def __exit__(self, *exc) -> None:
        for executor in self._made.values():
            executor.close(now=exc[0] is not None)

    def for_recipe(self, recipe):
        if self.spec is not None and not isinstance(self.spec, str):  # an executor made by the caller (left open)
            return self.spec
        if self.spec is None and not self.shared:
            return None
        threads = recipe.benchmark.threads
        if threads not in self._made:
            from edgekit.evaluate import worker
            from edgekit.executors import schemes as executor
            from edgekit.pipeline import build_log as quiet

            output = None if self.logs is None else self.logs / quiet.WORKERS_LOG
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text("")  # this command's workers only
            # Its lines (a worker started or died) go to the terminal: it outlives each recipe's log.
            with quiet.descriptors_to(output):  # a dask://local cluster starts its worker processes here
                self._made[threads] = executor.make_executor(worker.prepare, (threads,), log=quiet.say, spec=self.spec,
                                                             output=output)
        return self._made[threads]


def _prepare_all(recipes, out_dir: Path, executors: Executors, fresh: bool, force: bool, tensorboard: bool) -> dict:
    """Where builds travel whole (``edgekit.pipeline.whole_build``): every recipe's preparation sent at
    once, so they spread over the workers while this process times one recipe after another."""
    from edgekit.cache import Cache
    from edgekit.pipeline import whole_build

    prepared = {}
    for recipe in recipes:
        future = whole_build.submit(executors.for_recipe(recipe), recipe, out_dir / recipe.name, Cache(enabled=not fresh),
                                    force=force, tensorboard=tensorboard, scope="variants")
        if future is not None:
            prepared[recipe.name] = future
    if prepared:
        whole_build.warm_up(recipes[0].benchmark.threads, sorted({f for r in recipes for f in r.export.formats}))
    return prepared


def build_all(recipes, out_dir: Path, *, fresh: bool = False, force: bool = False, retime: bool = False,
              tensorboard: bool = True, verbose: bool = False, executor: str | None = None,
              say: Callable[[str], None] = print, on_built: Callable | None = None) -> dict:
    """Build ``recipes`` (loaded Recipe objects) one after another on shared executors.

    Args:
        out_dir: the folder of their run directories (``<out_dir>/<name>/``), summary.json and
            workers.log.
        executor: ``--executor`` (None: ``$EDGEKIT_EXECUTOR``, else the local pool), or an executor
            made already (``edgekit.executors.schemes.make_executor``), which stays open.
        say: receives a line as each recipe starts and when one fails.
        on_built: called with (Results, run_dir) as each recipe's build ends.

    Returns:
        summary.json's document: the exit code and each recipe's outcome and best rows.

    Raises:
        InputError: two recipes with one name (their run directories would be one).
    """
    from edgekit import api

    names = [r.name for r in recipes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"two recipes are named {twice[0]!r}: their run directories would be the same "
                         f"({out_dir / twice[0]}); give each recipe its own name: field")
    outcomes: list[RecipeOutcome] = []
    stop = False
    with Executors(executor, shared=True, logs=None if verbose else out_dir) as executors:
        prepared = _prepare_all(recipes, out_dir, executors, fresh, force, tensorboard)
        for i, recipe in enumerate(recipes, 1):
            run_dir = out_dir / recipe.name
            outcome = RecipeOutcome(recipe.name, str(recipe.path), str(run_dir), "not built", 0)
            outcomes.append(outcome)
            if stop:
                continue
            say(f"== [{i}/{len(recipes)}] {recipe.name} ({recipe.path})")
            try:
                result = api.build(recipe, run_dir, fresh=fresh, force=force, retime=retime, tensorboard=tensorboard,
                                   verbose=verbose, executor=executors.for_recipe(recipe), preflight=False,
                                   prepared=prepared.get(recipe.name))
            except EdgekitError as exc:
                outcome.status = "interrupted" if exc.exit_code == 130 else "error"
                outcome.exit_code, outcome.reason = exc.exit_code, exc.format_message()
                say(f"{recipe.name}: {exc.format_message()}")
                stop = exc.exit_code == 130 or isinstance(exc, SchedulerLost)  # the others cannot run either
                continue
            if on_built is not None:
                on_built(result, run_dir)
            outcome.results, outcome.seconds = result.results, result.results.get("build_seconds")
            failed = [row["id"] for row in result.results["rows"] if row["status"] == "failed"]
            outcome.status, outcome.exit_code = ("failed", 1) if failed else ("ok", 0)
            outcome.reason = f"{len(failed)} row(s) failed" if failed else None
    codes = [o.exit_code for o in outcomes]
    return summary(outcomes, 130 if 130 in codes else max(codes, default=0))
