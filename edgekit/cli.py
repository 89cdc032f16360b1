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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Train, compress, convert and benchmark a Keras model for edge devices, from one recipe."""


@cli.command()
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: runs/<recipe name>/).")
def build(recipe_file: Path, out_dir: Path | None) -> None:
    """Build every variant of RECIPE, measure each, and write results.json and report.md.

    Exit codes: 0 every row ok or skipped, 1 some row failed, 2 bad recipe or input.
    """
    from edgekit.recipe import load_recipe

    recipe = load_recipe(recipe_file)
    _quiet_tensorflow()
    from edgekit import pipeline, report

    run_dir = out_dir or Path("runs") / recipe.name
    result = pipeline.build(recipe, run_dir, log=_log)
    report.print_table(result.results)
    click.echo(f"results: {run_dir / 'results.json'}  report: {run_dir / 'report.md'}  "
               f"({result.results['build_seconds']} s)")
    if result.failed:
        failed = [row["id"] for row in result.results["rows"] if row["status"] == "failed"]
        raise click.ClickException(f"{len(failed)} row(s) failed: {', '.join(failed)}; see the reasons in the table")


@cli.command()
def schema() -> None:
    """Print the recipe JSON Schema (for editor validation of recipe files)."""
    import json

    from edgekit.recipe import Recipe

    click.echo(json.dumps(Recipe.model_json_schema(), indent=2))


@cli.command()
def formats() -> None:
    """List the export formats, their precisions, and whether their runtime is installed."""
    from edgekit.formats import FORMATS

    for fmt in FORMATS.values():
        runtime = fmt.installed_runtime()
        state = f"runtime: {runtime}" if runtime else f"runtime missing: pip install {fmt.runtime_packages[0].replace('_', '-')}"
        click.echo(f"{fmt.name:<10} {fmt.suffix:<8} {','.join(fmt.precisions):<12} {state}  - {fmt.description}")


@cli.command()
def models() -> None:
    """List the model zoo and each builder's parameters with their defaults."""
    from edgekit.models import ZOO, builder_params

    for name, builder in ZOO.items():
        summary = (builder.__doc__ or "").strip().splitlines()[0]
        params = ", ".join(f"{k}={v!r}" for k, v in builder_params(name).items())
        click.echo(f"{name:<8} {summary}\n         params: {params}")


@cli.command()
@click.argument("results_file", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--baseline", "baseline_file", type=click.Path(path_type=Path), default=None,
              help="Stored baseline (from `edgekit baseline save`, or a results.json) to check regressions against.")
@click.option("--recipe", "recipe_file", type=click.Path(path_type=Path), default=None,
              help="Recipe whose check: section holds the budgets (default: the recipe.yaml beside RESULTS, "
                   "else the default budgets).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the outcome of every budget as JUnit XML to this file.")
def check(results_file: Path, baseline_file: Path | None, recipe_file: Path | None, junit_file: Path | None) -> None:
    """Check RESULTS (a results.json or run directory) against the recipe's budgets and a baseline.

    Prints every budget (row, value, limit, pass or fail). Latency is compared as in-run ratios
    (row p50 / baseline-row p50), so a slower CI machine does not fail. Appends a Markdown
    summary to $GITHUB_STEP_SUMMARY when it is set.

    Exit codes: 0 every budget holds, 1 a budget failed, 2 bad or mismatched input.
    """
    from edgekit import check as checking
    from edgekit.errors import EdgekitError

    report = checking.run_check(results_file, baseline_file, recipe_file)
    click.echo(checking.format_text(report))
    if junit_file is not None:
        checking.write_junit(report, junit_file)
        click.echo(f"junit: {junit_file}")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(checking.step_summary(report))
    if report.failures:
        raise EdgekitError(checking.summary_line(report))
    click.echo(checking.summary_line(report))


@cli.group()
def baseline() -> None:
    """Store baselines for `edgekit check`."""


@baseline.command("save")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def baseline_save(run_dir: Path, path: Path) -> None:
    """Store RUN_DIR's results, recipe hash and environment as a baseline file at PATH."""
    from edgekit.baseline import save_baseline

    doc = save_baseline(run_dir, path)
    recipe = doc["recipe"]
    click.echo(f"baseline: {path} ({len(doc['results']['rows'])} rows of recipe {recipe.get('name')}, "
               f"sha256 {str(recipe.get('sha256'))[:12]}); commit it and run: edgekit check RUN_DIR --baseline {path}")


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report_command(run_dir: Path) -> None:
    """Regenerate RUN_DIR/report.html and its PNG plots from results.json and latency.json."""
    from edgekit import html_report

    path = html_report.regenerate(run_dir)
    click.echo(f"report: {path}  plots: {path.parent / html_report.PLOTS_DIR}/")


def main() -> None:
    cli(prog_name="edgekit")


if __name__ == "__main__":
    sys.exit(main())
