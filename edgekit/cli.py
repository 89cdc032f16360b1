"""The edgekit command line. Heavy libraries are imported inside commands, so that
``edgekit --help`` answers at once and never imports TensorFlow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgekit import __version__


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) drowns the build log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _log(message: str) -> None:
    click.echo(message, err=True)


#: --format of the commands that print the results table (edgekit.report.terminal.FORMATS)
_FORMAT_OPTION = click.option(
    "--format", "table_format", type=click.Choice(["table", "plain", "markdown", "json"]), default="table",
    show_default=True,
    help="How the results table is printed: fitted to the terminal, each row's notes as numbered footnotes under it "
         "(table); or for scripts, on stdout with every other line on stderr: tab-separated with every column (plain), "
         "markdown, or json. A build of several recipes prints its summary table as it is.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Train, compress, convert and benchmark a Keras model for edge devices, from one recipe."""


@cli.command()
@click.argument("recipe_files", metavar="RECIPE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: runs/<recipe name>/); with several recipes, the folder that holds "
                   "one run directory per recipe (default: runs/).")
@click.option("--fresh", is_flag=True, help="Ignore the stage cache: retrain, reconvert and re-measure everything.")
@click.option("--force", is_flag=True, help="Build into --out even if it is a non-empty folder that is not a run directory.")
@click.option("--retime", is_flag=True, help="Time every row again (the machine was busy); everything else from the cache.")
@click.option("--executor", "executor_spec", default=None, metavar="local|dask://HOST:PORT",
              help="Where a build's work (training, fine-tuning, conversions) and device benchmarks run: local "
                   "worker processes (default), a Dask scheduler (dask://HOST:PORT), or a Dask cluster started on "
                   "this machine (dask://local); this machine's rows are timed here. "
                   "Default: $EDGEKIT_EXECUTOR, else local.")
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True,
              help="TensorBoard logs of training and fine-tuning, and the results as hparams, under "
                   "<run>/tensorboard/ (tensorboard --logdir runs/).")
@click.option("-v", "--verbose", is_flag=True,
              help="Show TensorFlow's, tf2onnx's, NNCF's and LiteRT's own output live (default: kept in <run>/build.log).")
@click.option("--history", "history_url", default=None, metavar="PATH|URL",
              help="Record the build in this results store: a SQLite file, or a database URL (postgresql+psycopg://...; "
                   "pip install 'keras-edgekit[history]'). Default when $CI is set: $EDGEKIT_HISTORY, else history.db in the "
                   "cache folder; otherwise nothing is recorded.")
@_FORMAT_OPTION
def build(recipe_files: tuple[Path, ...], out_dir: Path | None, fresh: bool, force: bool, retime: bool,
          executor_spec: str | None, tensorboard: bool, verbose: bool, history_url: str | None,
          table_format: str = "table") -> None:
    """Build every variant of each RECIPE (a recipe file, or a folder of them), measure each, and
    write results.json and report.md into its run directory.

    Stages whose inputs did not change since an earlier build are taken from the cache
    ($EDGEKIT_CACHE_DIR or ~/.cache/edgekit), which recipes share. Several recipes end with one
    summary table (and <out>/summary.json). Exit codes: 0 every row ok or skipped, 1 some row
    failed (or a build failed), 2 bad recipe or input, 130 interrupted (partial results are written).
    """
    from edgekit import api
    from edgekit.pipeline import many
    from edgekit.recipe.schema import load_recipe

    paths = many.recipe_paths(recipe_files)
    recipes = [load_recipe(path) for path in paths]  # every recipe is checked before anything is built
    for recipe in recipes:
        if recipe.search is not None:
            _log(f"{recipe.name}: its search: section is left alone by build (the recipe builds as written); "
                 f"`edgekit search {recipe.path}` runs the search")
    _quiet_tensorflow()
    _check_executor(executor_spec)
    if len(recipes) == 1 and (len(recipe_files) == 1 and not recipe_files[0].is_dir()):
        run_dir = out_dir or Path("runs") / recipes[0].name
        _preflight(recipes[0], run_dir, cache_used=not fresh)
        error = None
        # closed (a Dask cluster stopped) before the exit
        with many.Executors(executor_spec, logs=None if verbose else run_dir) as executors:
            try:
                result = api.build(recipes[0], run_dir, fresh=fresh, force=force, retime=retime, tensorboard=tensorboard,
                                   verbose=verbose, executor=executors.for_recipe(recipes[0]), preflight=False)
            except click.ClickException as exc:  # bad input (2), interrupted (130), ...: written and said already
                error = exc
        if error is not None:
            _build_exit(error.exit_code, error)
            raise error
        _print_build(result, run_dir, table=True, table_format=table_format)
        error = _record_history(result, run_dir, history_url, quiet=table_format != "table")
        if result.failed and error is None:
            failed = [row["id"] for row in result.results["rows"] if row["status"] == "failed"]
            error = click.ClickException(f"{len(failed)} row(s) failed: {', '.join(failed)}; see the reasons in the table")
        _build_exit(error.exit_code if error else 0, error)
        if error is not None:
            raise error
        return
    _build_many(recipes, out_dir or Path("runs"), executor_spec, fresh=fresh, force=force, retime=retime,
                tensorboard=tensorboard, verbose=verbose, history_url=history_url)


def _record_history(result, run_dir: Path, history_url: str | None, quiet: bool = False):
    """Record a finished build in the results store (``--history``, or the default one in CI);
    returns the error to exit with when an asked-for store cannot be written (the run itself is
    written already), None otherwise: a store on by default only warns. ``quiet``: its line
    goes to stderr (stdout holds the table for a script)."""
    from edgekit import history
    from edgekit.errors import EdgekitError

    url = history.wanted(history_url)
    if url is None:
        return None
    try:
        where, added, given = history.record(result.results, url, run_dir)
    except EdgekitError as exc:
        if history_url:
            return exc
        _log(f"[history] not recorded: {exc.message}")
        return None
    click.echo(f"history: {added} of {given} row(s) recorded in {where}"
               + ("" if added == given else f" ({given - added} already there: measurements reused from the cache)"),
               err=quiet)
    return None


def _print_build(result, run_dir: Path, table: bool, table_format: str = "table") -> None:
    """The table (one recipe) and the lines on what was reused and where the results are (on
    stderr when the table is for a script: ``--format plain|markdown|json``)."""
    err = table_format != "table"
    if table:
        from edgekit.report.terminal import print_table

        print_table(result.results, fmt=table_format)
    else:  # one of several recipes: no table, but a suspect baseline and the loss count still show
        from edgekit.report.flags import summary_lines

        for line in summary_lines(result.results):
            click.echo(f"{result.results['recipe']['name']}: {line}")
    reused = {stage: len(names) for stage, names in result.results["reused"].items() if names}
    if reused:
        click.echo("reused from the cache: " + ", ".join(f"{stage} {n}" for stage, n in reused.items()), err=err)
    click.echo(f"results: {run_dir / 'results.json'}  report: {run_dir / 'report.md'}  "
               f"({result.results['build_seconds']} s)", err=err)


def _build_many(recipes, out_dir: Path, executor_spec: str | None, **options) -> None:
    """Build ``recipes`` one after another on shared executors (``edgekit.pipeline.many``); one summary
    table and exit code. ``options``: fresh, force, retime, tensorboard, verbose."""
    from edgekit.pipeline import many
    from edgekit.report.summary import print_summary, write_summary

    history_url = options.pop("history_url", None)
    for recipe in recipes:
        _preflight(recipe, out_dir / recipe.name, cache_used=not options["fresh"])
    failed_records = []

    def on_built(result, run_dir):
        _print_build(result, run_dir, table=False)
        if (error := _record_history(result, run_dir, history_url)) is not None:
            failed_records.append(error)
            _log(f"[history] {error.message}")

    data = many.build_all(recipes, out_dir, executor=executor_spec, say=_log, on_built=on_built, **options)
    print_summary(data)
    click.echo(f"summary: {write_summary(out_dir, data)}")
    code, error = data["exit_code"] or (1 if failed_records else 0), None
    if failed_records and not data["exit_code"]:
        error = failed_records[0]
    elif code:
        bad = [r["name"] for r in data["recipes"] if r["exit_code"]]
        error = click.ClickException(f"{len(bad)} of {len(data['recipes'])} recipe(s) did not build cleanly: {', '.join(bad)}")
        error.exit_code = code
    _build_exit(code, error)
    if error is not None:
        raise error


#: libraries that cost seconds to import: a command that does not need them imports none (the
#: tests hold the light commands to it); EDGEKIT_DEBUG_IMPORTS=1 reports which of them `edgekit
#: build` imported as it exits (benchmarks/pipeline_speed.py reads it)
HEAVY_MODULES = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx", "nncf", "onnxruntime",
                 "openvino", "ai_edge_litert", "sklearn", "matplotlib")
#: the part of HEAVY_MODULES only training, compression and conversion need: a fully cached
#: rebuild imports none of it (it still opens the runtimes to time its rows, and draws its plots)
TRAINING_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "nncf")


def _build_exit(code: int, error: click.ClickException | None) -> None:
    """End the build's process now, with ``code``, once everything is written and flushed.

    Every results file, cache entry and log line is complete before this runs (files are
    written and renamed into place, the workers were stopped and waited for by the pipeline);
    what the interpreter would still do is tear down TensorFlow, onnxruntime and OpenVINO,
    about 1.2-1.8 s after the results line for nothing. Only the console program exits this
    way (``edgekit``, ``python -m edgekit``): ``CliRunner`` and Python callers get the
    ordinary return or exception. ``error`` is shown as ``main`` would show it.
    """
    if os.environ.get("EDGEKIT_DEBUG_IMPORTS"):
        shown = " ".join(f"{name}={'yes' if name in sys.modules else 'no'}" for name in HEAVY_MODULES)
        click.echo(f"[debug] imported: {shown}", err=True)
    context = click.get_current_context(silent=True)
    console = (context is not None and context.find_root().info_name == "edgekit"
               and sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__)
    if not console:
        return
    if error is not None:
        error.show()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)


def _check_executor(spec: str | None) -> None:
    """A scheduler that cannot answer fails now, in one line, before a run directory is made."""
    from edgekit.executors import schemes

    schemes.check(spec)


def _preflight(recipe, run_dir: Path, cache_used: bool) -> None:
    """Fail now, in one line, for what would otherwise fail after training."""
    from edgekit.pipeline import preflight

    preflight.before_build(recipe, run_dir, cache_used, say=_log)


@cli.command()
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(path_type=Path))
def validate(recipe_file: Path) -> None:
    """Check RECIPE and its data without training anything: the schema, the data file's arrays
    (shapes, labels, NaN or infinity, empty splits) and the device profiles it names.

    Exit codes: 0 a build would start, 2 the problem, in one line. Never imports TensorFlow.
    """
    from edgekit.data import load_dataset
    from edgekit.recipe.schema import load_recipe

    recipe = load_recipe(recipe_file)
    for line in _outside(recipe):
        _log(line)
    data = load_dataset(recipe.data, recipe.seed, recipe.quantize.calibration_samples, task=recipe.task,
                        output_tasks=recipe.outputs)
    from edgekit.train.fit import check_chosen_shape_data, model_inputs

    data = model_inputs(recipe, data)  # what the artifacts take (a generator: latent vectors), as the build does
    check_chosen_shape_data(recipe.model.input_shape, data)  # the build refuses it once the model is loaded
    from edgekit.report.results import LABELLED_TASKS

    if recipe.task in LABELLED_TASKS:  # the names labels.txt will hold, as the build checks them
        from edgekit.data.checks import check_class_names

        check_class_names(data.class_names)
    if recipe.model.file is not None and not Path(recipe.model.file).exists():
        from edgekit.errors import ModelError

        raise ModelError(f"model.file: not found: {recipe.model.file}; check the path (relative paths start at the recipe's folder)")
    click.echo(f"{recipe_file}: ok: {recipe.task}, model {recipe.model.source}, data {recipe.data.source} "
               f"(train {len(data.x_train)}, val {len(data.x_val)}, test {len(data.x_test)}, input {data.inputs_summary}, "
               f"{data.labels_summary}), "
               f"formats {', '.join(recipe.export.formats)}, targets {', '.join(recipe.targets)}")


@cli.command()
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The search's folder (default: runs/<recipe name>-search/).")
@click.option("--executor", "executor_spec", default=None, metavar="local|dask://HOST:PORT",
              help="Where trials are prepared: this machine (default), or a Dask cluster (dask://HOST:PORT, "
                   "dask://local), whose workers train, fine-tune and convert several trials at once.")
@click.option("--strategy", type=click.Choice(["auto", "grid", "tpe"]), default=None,
              help="Override search.strategy.")
@click.option("--max-trials", type=click.IntRange(min=1, max=10_000), default=None, help="Override search.max_trials.")
@click.option("--retime", is_flag=True, help="Time every trial again; everything else from the cache.")
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' own output live (default: kept in <out>/build.log).")
def search(recipe_file: Path, out_dir: Path | None, executor_spec: str | None, strategy: str | None,
           max_trials: int | None, retime: bool, verbose: bool) -> None:
    """Search RECIPE's search: space for the variant to ship: the lowest p50 (or size, or memory) on
    its target within the constraints. Each trial is a cached build of a recipe of its own
    (<out>/trials/<id>.yaml); results.json holds every trial, the Pareto front and the pick.

    Exit codes: 0 a trial meets the constraints (the pick), 1 none does, 2 bad recipe or input,
    130 interrupted (the finished trials are written; run it again to resume).
    """
    from edgekit.errors import EdgekitError
    from edgekit.search import run_search
    from edgekit.search.report import COLUMNS, table_rows

    _quiet_tensorflow()
    _check_executor(executor_spec)
    document = run_search(recipe_file, out_dir, executor=executor_spec, strategy=strategy, max_trials=max_trials,
                          retime=retime, verbose=verbose, say=_log)
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS, show_lines=False)
    for row in table_rows(document):
        table.add_row(*row)
    Console(width=max(Console().width, 160)).print(table)
    folder = out_dir or Path("runs") / f"{document['recipe']['name']}-search"
    click.echo(f"results: {folder / 'results.json'}  report: {folder / 'report.html'}")
    if document["search"]["pick"] is None:
        raise EdgekitError("no trial meets the search's constraints; see the table (each trial's notes say why)")


def _outside(recipe) -> list[str]:
    from edgekit.pipeline import preflight

    return preflight.outside_paths(recipe)


@cli.group()
def cache() -> None:
    """Show or empty the stage cache ($EDGEKIT_CACHE_DIR or ~/.cache/edgekit)."""


@cache.command("info")
def cache_info() -> None:
    """Entries and size per stage."""
    from edgekit.cache import Cache
    from edgekit.report.cells import human_size

    store = Cache()
    stages = store.info()
    click.echo(f"cache: {store.root}")
    if not stages:
        click.echo("empty")
    for stage, numbers in stages.items():
        click.echo(f"{stage:<10} {numbers['entries']:>5} entries  {human_size(numbers['bytes']):>10}")


@cache.command("clear")
def cache_clear() -> None:
    """Remove every cache entry (only edgekit's stage folders; other files in the folder stay)."""
    from edgekit.cache import Cache

    store = Cache()
    click.echo(f"removed {store.clear()} entries from {store.root}")


@cli.command()
def schema() -> None:
    """Print the recipe JSON Schema (for editor validation of recipe files)."""
    import json

    from pydantic.json_schema import GenerateJsonSchema

    from edgekit.recipe.schema import Recipe

    class WithFactoryDefaults(GenerateJsonSchema):
        """Also show the defaults made by a factory (export.formats, targets, quantize.precisions):
        pydantic leaves them out, and an editor then shows no default for them."""

        def default_schema(self, schema):
            if "default_factory" in schema and not schema.get("default_factory_takes_data"):
                schema = {**{k: v for k, v in schema.items() if k != "default_factory"}, "default": schema["default_factory"]()}
            return super().default_schema(schema)

    click.echo(json.dumps(Recipe.model_json_schema(schema_generator=WithFactoryDefaults), indent=2))


@cli.command()
def formats() -> None:
    """List the export formats, their precisions (and which of them this machine runs natively),
    where they run, and whether their runtime is installed."""
    from edgekit.formats import FORMATS, host_isa
    from edgekit.targets import kinds_running

    isa = host_isa()
    # The precision column fits the longest list (tflite's six precisions are 39 characters).
    width = max(len(",".join(fmt.precisions)) for fmt in FORMATS.values())
    for fmt in FORMATS.values():
        versions = [(module, _module_version(module)) for module in fmt.runtime_packages]
        state = "runtime: " + ", ".join(f"{module} {version or 'not installed'}" for module, version in versions)
        if not any(version for _, version in versions):
            state += f" (pip install {fmt.runtime_packages[0].replace('_', '-')})"
        click.echo(f"{fmt.name:<10} {fmt.suffix:<8} {','.join(fmt.precisions):<{width}}  {state}; runs on {', '.join(kinds_running(fmt))}"
                   f"  - {fmt.description}")
        # Precisions that need an ISA extension: whether this CPU has it (a recipe listing one
        # gets a skipped row where it does not; fmt.auto_precisions are added where it does).
        for precision, flags in fmt.native_isa:
            reason = fmt.skip_reason(precision, isa)
            verdict = (f"native here ({', '.join(f for f in flags if f in isa)})" if reason is None
                       else f"not native here (needs {' or '.join(flags)}): its rows are skipped")
            auto = ("; added to the base model's fp32 rows by itself where a speed probe finds it as fast as fp32"
                    if reason is None and precision in fmt.auto_precisions else "")
            click.echo(f"{'':<10} {precision}: {verdict}{auto}")
    special = [(fmt, p) for fmt in FORMATS.values() for p, _ in fmt.native_isa]
    native = [f"{fmt.name} {p}" for fmt, p in special if fmt.skip_reason(p, isa) is None]
    click.echo(f"this CPU ({', '.join(isa) or 'no ISA flags read'}) runs natively: "
               + (", ".join(native) if native else "none of " + ", ".join(f"{fmt.name} {p}" for fmt, p in special))
               + " (besides every format's fp32 and int8)")


def _module_version(module: str) -> str | None:
    """The installed version of the distribution that provides ``module`` (``onnxruntime`` from
    onnxruntime or onnxruntime-gpu), without importing it; None when it is not installed."""
    import importlib.util
    from importlib import metadata

    if importlib.util.find_spec(module) is None:
        return None
    for name in metadata.packages_distributions().get(module, []) or [module.replace("_", "-")]:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "(version unknown)"


def _plain(text: str) -> str:
    """A docstring's reStructuredText markup as plain text: ``alpha`` and :class:`X` become alpha and X."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``|`([^`]+)`", lambda m: m.group(1) or m.group(2), text)


@cli.command()
def models() -> None:
    """List the model zoo: each builder, the tasks it fits, and its parameters with their defaults."""
    from edgekit.models import ZOO, describe

    for name in ZOO:
        info = describe(name)
        if info["alias_of"]:
            click.echo(f"{name}: another name for {info['alias_of']}\n")
            continue
        click.echo(f"{name}: {_plain(info['summary'])}\n  tasks: {', '.join(info['tasks'])}")
        for param, (default, text) in info["params"].items():
            click.echo(f"  {param}={default!r}: {_plain(text)}")
        click.echo("")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--readme", "readmes", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rewrite the recipe table between the marker comments of this file (docs/recipes.md: the whole "
                   "table; README.md: its narrow excerpt); repeatable.")
def table(runs: tuple[Path, ...], readmes: tuple[Path, ...]) -> None:
    """Print the recipe table (one line per run: metrics, sizes, p50) from RUNS (run directories or results.json).

    Example: edgekit table runs/*/ --readme docs/recipes.md
    """
    from edgekit.report import readme_table

    docs = readme_table.load(list(runs))
    text = readme_table.table(docs)
    if not readmes:
        click.echo(text, nl=False)
    for readme in readmes:
        readme_table.update_readme(readme, text, readme_table.excerpt(docs))
        click.echo(f"{readme}: recipe table rewritten from {len(runs)} run(s)")


@cli.command()
@click.argument("results_file", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--baseline", "baseline_file", type=click.Path(path_type=Path), default=None,
              help="Stored baseline (from `edgekit baseline save`, or a results.json) to check regressions against.")
@click.option("--recipe", "recipe_file", type=click.Path(path_type=Path), default=None,
              help="Recipe whose check: section holds the budgets (default: the recipe.yaml beside RESULTS, "
                   "else the default budgets).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the outcome of every budget as JUnit XML to this file.")
@click.option("--history", "history_url", default=None, metavar="PATH|URL",
              help="A results store (SQLite file or database URL, as `edgekit build --history`): judge every row against "
                   "its last --window runs there (same row, target and machine), with intervals over the runs.")
@click.option("--window", type=click.IntRange(min=1, max=10_000), default=10, show_default=True,
              help="With --history: how many earlier runs of a row make its baseline window.")
@click.option("--allow-suspect", is_flag=True,
              help="Do not fail a build whose Keras baseline is suspect (not above the majority class or chance of "
                   "its test split: results.json sanity); it is still reported.")
@click.option("--allow-unjudged", is_flag=True,
              help="Pass even when a latency budget could not be judged because a row's timing was unstable "
                   "(its rounds disagreed); they are still reported. Default: such a check exits 1.")
def check(results_file: Path, baseline_file: Path | None, recipe_file: Path | None, junit_file: Path | None,
          history_url: str | None, window: int, allow_suspect: bool, allow_unjudged: bool) -> None:
    """Check RESULTS (a results.json or run directory) against the recipe's budgets and a baseline.

    Prints every budget (row, value, limit, pass or fail). Latency is compared as ratios measured
    inside one run: each row's p50 over its fp32 sibling's (the same model in the same runtime and
    target; latency_reference: baseline divides by the run's baseline row instead), now against
    the same ratio in the baseline, so a slower CI machine does not fail. Appends a Markdown
    summary to $GITHUB_STEP_SUMMARY when it is set.

    Exit codes: 0 every budget holds, 1 a budget failed or a latency budget could not be judged
    (unstable timing; unless --allow-unjudged), and always for the partial results of an
    interrupted build (its unfinished rows fail with status interrupted) and for a suspect baseline
    unless --allow-suspect; 2 bad or mismatched input.
    """
    from edgekit import api
    from edgekit.check import output
    from edgekit.errors import EdgekitError

    report = api.check(results_file, baseline_file, recipe_file, junit=junit_file, history=history_url, window=window,
                       allow_suspect=allow_suspect, allow_unjudged=allow_unjudged)
    click.echo(output.format_text(report))
    if junit_file is not None:
        click.echo(f"junit: {junit_file}")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(output.step_summary(report))
    if not report.passed:
        raise EdgekitError(output.summary_line(report))
    click.echo(output.summary_line(report))


@cli.command("history")
@click.argument("name", metavar="RECIPE|ROW")
@click.option("--history", "history_url", default=None, metavar="PATH|URL",
              help="The results store (default: $EDGEKIT_HISTORY, else history.db in the cache folder).")
@click.option("--recipe", "recipe_name", default=None, help="With a row id: only this recipe's runs of it.")
@click.option("--target", default=None, help="Only rows timed on this target.")
@click.option("--last", type=click.IntRange(min=1), default=30, show_default=True, help="Runs per row shown.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the plot (PNG; default: NAME.history.png here).")
def history_command(name: str, history_url: str | None, recipe_name: str | None, target: str | None, last: int,
                    plot_file: Path | None) -> None:
    """Print the trend of a recipe's rows (or of one row id: every run of it) recorded in the
    results store: p50 with its 95% interval, the task metric, the size; and write a plot of it.

    Exit codes: 0 printed, 2 no such recipe or row, or the store cannot be read.
    """
    from edgekit.history import store, trend

    opened = store.open_store(history_url)
    kind, series = trend.series_for(opened, name, recipe_name, target, last)
    click.echo(f"history {opened.url}: {kind} {name}")
    click.echo(trend.text(kind, series))
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
    path = trend.plot(series, plot_file or Path(f"{safe}.history.png"), f"{kind} {name}: p50 per run")
    click.echo(f"plot: {path}")


@cli.group()
def baseline() -> None:
    """Store baselines for `edgekit check`."""


@baseline.command("save")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def baseline_save(run_dir: Path, path: Path) -> None:
    """Store RUN_DIR's results, recipe hash and environment as a baseline file at PATH."""
    from edgekit.check.baseline import save_baseline

    doc = save_baseline(run_dir, path)
    recipe = doc["recipe"]
    click.echo(f"baseline: {path} ({len(doc['results']['rows'])} rows of recipe {recipe.get('name')}, "
               f"sha256 {str(recipe.get('sha256'))[:12]}); commit it and run: edgekit check RUN_DIR --baseline {path}")
    shaky = [row["id"] for row in doc["results"]["rows"] if (row.get("timing") or {}).get("unstable")]
    if shaky:
        # every latency budget that reads these rows will go unjudged: say so now, not in CI
        _log(f"warning: {len(shaky)} row(s) of this run have unstable timing ({', '.join(shaky[:5])}"
             f"{', ...' if len(shaky) > 5 else ''}): `edgekit check` cannot judge their latency against this "
             "baseline; save one from a run timed on a quieter machine (edgekit build --retime)")


@cli.command("report")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> None:
    """Regenerate report.html and its PNG plots of RUN (a run directory or its results.json)
    from results.json and latency.json."""
    from edgekit.errors import InputError
    from edgekit.report import html as html_report

    if run_dir.is_file() and run_dir.name != "results.json":
        raise InputError(f"{run_dir}: expected a run directory or its results.json (the plots are drawn beside it)")
    path = html_report.regenerate(run_dir.parent if run_dir.is_file() else run_dir)
    click.echo(f"report: {path}  plots: {path.parent / html_report.PLOTS_DIR}/")


@cli.command("verify")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.25, show_default=True,
              help="Allowed disagreement: a ratio edgekit/native within 1/(1+T) to 1+T passes.")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="Timed runs per side and pair (default: the row's own count of timed runs).")
@click.option("--pairs", type=click.IntRange(min=3), default=3, show_default=True,
              help="Alternating pairs per row: edgekit's session, then the tool, timed now in one window.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds one tool may run before its row fails (edgekit's own session: at least 120).")
@click.option("--tools-dir", "tools_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Look for benchmark_app and litert-benchmark only here (repeatable; default: PATH, then "
                   "the folder of edgekit's Python).")
def verify_command(run_dir: Path, tolerance: float, runs: int | None, pairs: int, timeout_s: float,
                   tools_dirs: tuple[Path, ...]) -> None:
    """Time RUN_DIR's artifacts now with edgekit's own session and each runtime's own benchmark
    tool, in alternating pairs, and judge their ratio with its 95% interval.

    Runs edgekit's session and benchmark_app (OpenVINO rows) or litert-benchmark (TFLite rows) on
    this machine, one after the other, PAIRS times, with the threads and inference precision the
    run used; prints per cpu row both p50s, their ratio with its interval and the build's stored
    p50 (shown, not judged), and writes RUN_DIR/verify.json. Rows without a tool (Keras,
    onnxruntime), of other targets, or not ok are listed as unchecked with the reason.

    Exit codes: 0 no ratio is significantly outside the tolerance, 1 one is (its whole interval
    outside) or a tool failed on a row, 2 no readable results.json.
    """
    from edgekit.bench import verify
    from edgekit.errors import EdgekitError

    search_path = os.pathsep.join(map(str, tools_dirs)) if tools_dirs else None
    report = verify.verify_run(run_dir, tolerance, runs, timeout_s, search_path, progress=_log, pairs=pairs)
    try:
        path = verify.write_json(report, Path(report.run_dir) / verify.VERIFY_FILE)
    except OSError as exc:  # a read-only run directory: the table still answers
        path = None
        _log(f"verify: could not write {verify.VERIFY_FILE} in {report.run_dir}: {exc.strerror or exc}")
    click.echo(verify.format_text(report))
    if report.exit_code:
        raise EdgekitError(verify.summary_line(report, path))
    click.echo(verify.summary_line(report, path))


_DEVICES_OPTION = click.option(
    "--devices", "devices_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of device profiles NAME.yaml (default: ./devices).")


def _device_dirs(devices_dir: Path | None) -> list[Path]:
    from edgekit.targets.profiles import search_dirs

    return [devices_dir] if devices_dir is not None else search_dirs()


@cli.group()
def devices() -> None:
    """SSH devices (devices/NAME.yaml) that builds and `edgekit bench` can time artifacts on."""


@devices.command("list")
@_DEVICES_OPTION
def devices_list(devices_dir: Path | None) -> None:
    """List the device profiles and what each says about its device."""
    from edgekit.errors import DeviceProfileError
    from edgekit.targets.profiles import find_profiles, load_profile

    dirs = _device_dirs(devices_dir)
    profiles = find_profiles(dirs)
    if not profiles:
        click.echo(f"no device profiles in {' or '.join(map(str, dirs))}; add one as devices/NAME.yaml "
                   "(see devices/example-pi.yaml in the edgekit repository)")
        return
    for name, path in profiles.items():
        try:
            p = load_profile(path)
        except DeviceProfileError as exc:
            click.echo(f"{name:<16} INVALID: {exc.message}")
            continue
        click.echo(f"{name:<16} {p.kind:<7} {p.listing()}  ({path})")


@devices.command("check")
@click.argument("name")
@_DEVICES_OPTION
def devices_check(name: str, devices_dir: Path | None) -> None:
    """Check device NAME (or every device of pool NAME) as its target kind checks it: an ssh
    device is reached and its Python, runtimes, CPU, ISA flags and free disk are reported; a
    microcontroller or Ethos-U profile checks its tool on this machine (TFLite Micro, Vela).

    Exit codes: 0 ready (every device of a pool), 1 unreachable or something missing (or a
    kind with nothing to check), 2 no such (or an invalid) profile.
    """
    from edgekit.errors import EdgekitError
    from edgekit.targets import resolve

    # an unknown name: the profile lookup's one line (did you mean ...)
    target = resolve([name], _device_dirs(devices_dir))[name]
    members = target.members()
    if target.is_pool:
        click.echo(f"pool {name}: {len(members)} device(s): {', '.join(m.name for m in members)}")
    failing = {}
    for member in members:
        problems = member.check(click.echo)  # the kind says whether, and how, its devices are checked
        if problems is None:
            raise EdgekitError(f"device {member.name}: target kind {member.kind} has nothing for devices check to "
                               "check; it needs no device")
        if problems:
            failing[member.name] = "; ".join(problems)
        if target.is_pool:
            click.echo(f"device {member.name}: " + (f"NOT READY: {failing[member.name]}" if problems else "ready"))
    if not target.is_pool:
        if failing:
            raise EdgekitError(f"device {name}: {failing[target.name]}")
        click.echo(f"device {name}: ready")
    elif failing:
        raise EdgekitError(f"pool {name}: {len(failing)} of {len(members)} device(s) not ready: "
                           + "; ".join(f"{device}: {why}" for device, why in failing.items()))
    else:
        click.echo(f"pool {name}: all {len(members)} device(s) ready")


@cli.command("bench")
@click.argument("model_files", metavar="MODEL_FILE...", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "targets", multiple=True, default=("cpu",), show_default=True,
              help="Where to time: cpu, or a device name (devices/NAME.yaml); repeat for several, side by side.")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Minimum timed runs.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed runs first.")
@click.option("--min-time", "min_time_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Keep timing until this many seconds have been spent in timed runs.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Intra-op threads.")
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Distinct samples cycled through (random, or the first ones of --inputs).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An .npz with the samples: one array per model input, named after it (one input: also x, x_test "
                   "or a single array), each in its own dtype; default: generated samples (floats uniform in [0, 1), "
                   "integers 0..1) of each input's shape.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=1x3x320x320",
              help="Fix an input's free dimensions (the whole shape, batch first); repeat per input. "
                   "Without it, --inputs samples fix them.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results (results.json layout) to this file.")
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="Per-op profile and peak memory of each file on this machine, in a fresh process after the timed rounds.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show the runtimes' own output live (default: kept in the .log beside --out, else not shown).")
@_DEVICES_OPTION
@_FORMAT_OPTION
def bench_command(model_files, targets, runs, warmup, min_time_s, threads, samples, inputs_file, shapes, out_file, profile,
                  devices_dir, table_format="table", verbose=False) -> None:
    """Time existing model files (any format of `edgekit formats`) without a recipe, here or on a device.

    Exit codes: 0 every row ok or skipped, 1 a row failed, 2 bad input (file, profile, inputs).
    """
    from edgekit import api
    from edgekit.errors import EdgekitError
    from edgekit.report.terminal import print_table

    result = api.bench(list(model_files), list(targets), runs=runs, warmup=warmup, min_time_s=min_time_s, threads=threads,
                       samples=samples, inputs=inputs_file, profile=profile, devices=devices_dir, out=out_file, log=_log,
                       shapes=shapes, verbose=verbose)
    print_table(result.results, fmt=table_format)
    if out_file is not None:
        click.echo(f"results: {out_file}", err=table_format != "table")
    failed = [row["id"] for row in result.failed]
    if failed:
        raise EdgekitError(f"{len(failed)} row(s) failed: {', '.join(failed)}; see the reasons in the table")


@cli.command("init")
@click.option("--model", "model_file", type=click.Path(path_type=Path), default=None,
              help="An existing model (.keras, .h5 or a SavedModel folder): the recipe is read off it.")
@click.option("--data", "data_file", type=click.Path(path_type=Path), default=None,
              help="With --model: its data as .npz (x_train, y_train, x_test, y_test, or x and y; no y: fidelity), "
                   "or a folder of images (a subfolder per class; images alone: fidelity).")
@click.option("--arch", default=None, help="Instead of --model: a zoo model (see `edgekit models`).")
@click.option("--dataset", default=None, help="With --arch: a builtin dataset (see `edgekit schema`, data.source).")
@click.option("--name", default=None, help="The recipe's name (default: the model file's stem, or DATASET_ARCH).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the recipe (default: NAME.yaml here).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--no-safe-mode", "unsafe", is_flag=True,
              help="With --model: load it the way Keras does, running the code it carries or names (a Lambda, a "
                   "subclassed model's module, imported from the recipe's folder); the recipe gets "
                   "model.safe_mode: false. Only for a file you trust.")
def init_command(model_file, data_file, arch, dataset, name, out_file, force, unsafe) -> None:
    """Write a starter recipe that validates: from a model file and its data
    (`edgekit init --model my.keras --data my.npz`: input shape, output width and dtype, task,
    metric, formats and precisions read off them) or from a zoo model and a builtin dataset
    (`edgekit init --arch cnn --dataset digits`). Never overwrites a file without --force.

    Exit codes: 0 written, 2 bad input (or the file exists).
    """
    from edgekit.recipe import starter as init_recipe

    if (model_file is None) == (arch is None):
        raise click.UsageError("give either --model FILE --data FILE.npz, or --arch NAME --dataset NAME")
    if model_file is not None and data_file is None:
        raise click.UsageError("--model needs --data FILE.npz (the data to measure the model on)")
    if arch is not None and dataset is None:
        raise click.UsageError("--arch needs --dataset NAME (a builtin dataset)")
    if unsafe and model_file is None:
        raise click.UsageError("--no-safe-mode is about a model file: give it with --model FILE")
    default_name = name or (model_file.stem if model_file is not None else f"{dataset}_{arch}")
    out_file = out_file or Path(f"{default_name}.yaml")
    if out_file.exists() and not force:  # before a model is loaded: the answer is the same
        from edgekit.errors import InputError

        raise InputError(f"{out_file} exists; edgekit init never overwrites a file: pass --force, or choose another --out")
    if model_file is not None:
        _quiet_tensorflow()
        from edgekit.pipeline.build_log import descriptors_to

        # Loading the model prints TensorFlow's start-up lines (a CUDA probe among them): none are ours.
        with descriptors_to(Path(os.devnull)):
            text = init_recipe.from_model(model_file, data_file, out_file.parent, name, safe_mode=not unsafe)
    else:
        text = init_recipe.from_zoo(arch, dataset, name)
    init_recipe.write(out_file, text, force=force)
    click.echo(text.rstrip())
    click.echo(f"recipe: {out_file} (validated); next: edgekit validate {out_file} && edgekit build {out_file}")


@cli.command("compare")
@click.argument("run_a", metavar="RUN_A", type=click.Path(path_type=Path))
@click.argument("run_b", metavar="RUN_B", type=click.Path(path_type=Path))
@click.option("--fail-on", "fail_on", multiple=True, metavar="BUDGET",
              help="Exit 1 when B breaks it, repeatable: metric=DROP (metric worse by more than DROP), p50=RATIO "
                   "(p50 past RATIO times A's, significantly), size=RATIO, status (a row ok in A is not in B).")
def compare_command(run_a: Path, run_b: Path, fail_on: tuple[str, ...]) -> None:
    """One table of what changed per row id from RUN_A to RUN_B (run directories or results.json):
    status, metric, size, p50 (B/A with its 95% interval and verdict), speedup.

    Raw p50s compare runs timed on the same machine; the speedup column (in-run ratios) compares
    across machines. Exit codes: 0 no --fail-on budget broken, 1 one is, 2 bad input.
    """
    from edgekit.errors import EdgekitError
    from edgekit.report import compare

    budgets = compare.parse_fail_on(fail_on)
    a, b = compare.load_pair(run_a, run_b)
    comparison = compare.compare(a, b, str(run_a), str(run_b), budgets)
    click.echo(compare.format_text(comparison))
    line = compare.summary_line(comparison, budgets)
    if comparison.failures:
        raise EdgekitError(line)
    click.echo(line)


def main() -> None:
    """The console script. An error edgekit did not foresee is still one line (exit 1) that says
    how to get the traceback: EDGEKIT_DEBUG=1 lets it through."""
    try:
        cli(prog_name="edgekit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        from edgekit import disk
        from edgekit.errors import one_line

        if disk.no_space(exc):  # a full disk under any command: what could not be written, and the room left
            disk.full_disk_error(exc, f"edgekit {' '.join(sys.argv[1:2])}".strip()).show()
            sys.exit(2)

        click.echo(f"Error: internal error: {one_line(exc)}; this is a bug in edgekit: rerun with EDGEKIT_DEBUG=1 "
                   "for the traceback and report it", err=True)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
