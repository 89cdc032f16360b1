"""results.json, assembled in one place: its header, the plan of its rows, and the whole file
for a finished build, an interrupted one, and ``edgekit bench`` on files.

Every results file, whatever wrote it, has the keys ``edgekit check`` and ``edgekit report``
read (``recipe``, ``environment``, ``primary_metric``, ``baseline``, ``rows``). A build plans its
rows from the recipe before anything is converted, so that Ctrl-C at any point still writes
every planned row: the finished ones as measured, the others with status ``interrupted``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.report.rows import latency_by_target, make_row, speedup_baseline
from edgekit.variant import Variant

#: the status of a planned row that an interrupted build did not finish; ``edgekit check``
#: fails such a row like any row that is not ok
INTERRUPTED = "interrupted"

#: tasks whose outputs are indexed by class: their run directory gets LABELS_FILE
LABELLED_TASKS = ("classification", "segmentation")
#: one class name per line, in index order: what Android and iOS sample apps read
LABELS_FILE = "labels.txt"


#: results.json ``stages``: wall seconds per stage, in build order (a stage not reached is absent)
STAGES = ("prepare", "data", "train", "compress", "convert", "evaluate", "convert_evaluate_wall", "bench", "report")
STAGES_NOTE = ("seconds. data, train (TensorFlow's import included when it trains; a model from the cache is loaded, "
               "and TensorFlow imported, by the first stage that misses its own entry), compress, bench and report: "
               "wall time in the "
               "build's process. convert and evaluate: each variant's own seconds, summed, measured in the worker "
               "process that ran it (evaluate includes the Keras baseline); they overlap compress and one another, "
               "so convert_evaluate_wall, the wall time of that whole phase, is what the build waited. prepare (builds "
               "sent whole to a cluster's worker, edgekit.pipeline.whole_build): what the build waited for that task, whose "
               "training, fine-tuning, Keras baseline and, for several recipes or a search, conversions then come "
               "from the cache. Time spent "
               "waiting for another build's hold of this machine's CPU lock is left out of these figures and "
               "recorded in waits (seconds per stage)")


def stage_fields(stages: dict[str, float]) -> dict[str, Any]:
    """results.json's ``stages`` (and ``stages_note``, what its numbers measure) from the
    seconds a build recorded so far."""
    return {"stages": {name: stages[name] for name in STAGES if name in stages}, "stages_note": STAGES_NOTE}


def relative_path(path: Path | str | None, run_dir: Path | str) -> str | None:
    """``path`` as results.json and manifest.json record it: relative to the run directory
    (POSIX separators) when it lies inside it, so the folder can be moved or uploaded; absolute
    when it lies outside (the source recipe, a data or model file, the cache), which do not
    move with it."""
    if path is None:
        return None
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(run_dir))
    for inner, outer in ((absolute, base), (absolute.resolve(), base.resolve())):
        try:
            return inner.relative_to(outer).as_posix()
        except ValueError:
            continue
    return str(absolute)


def resolve_path(recorded: str | None, run_dir: Path | str) -> Path | None:
    """A path read from results.json or manifest.json: a relative one starts at the run directory."""
    if not recorded:
        return None
    path = Path(recorded)
    return path if path.is_absolute() else Path(run_dir) / path


def _relative_rows(rows: list[dict], run_dir: Path | str | None) -> list[dict]:
    if run_dir is None:
        return rows
    return [{**row, "path": relative_path(row["path"], run_dir)} if row.get("path") else row for row in rows]


@dataclass(frozen=True)
class PlannedRow:
    """One row a build will write: ``variant`` (format, precision, model) timed on ``target``."""

    id: str
    target: str
    variant: Variant


def header(recipe: dict[str, Any], env: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The keys every results file starts with: edgekit's version, the recipe, the environment.

    Args:
        recipe: ``{"name", "path", "sha256"}`` of the recipe (all None but the name for bench).
        env: the environment block (``edgekit.environment.collect()``).
        **fields: what this kind of run adds (task, primary_metric, data, benchmark, command).
    """
    return {"edgekit_version": env["packages"].get("edgekit", "unknown"), "recipe": recipe, "environment": env, **fields}


def build_header(recipe, env: dict[str, Any], data_info: dict | None = None, data_key: str | None = None,
                 class_names: list[str] | None = None) -> dict[str, Any]:
    """The header of a build's results: recipe, environment, task and metric, data, benchmark.

    ``data_info`` is None before the data is loaded (a build interrupted that early): the
    header then has no ``data`` block. ``class_names`` (``Dataset.class_names``, index order)
    become ``data.classes`` (with ``data.labels_file``) for classification and segmentation,
    ``data.targets`` for regression (the model's outputs in order) and ``data.classes`` for
    anomaly flags (0 normal, 1 anomaly; no labels file: the model outputs reconstructions).
    """
    from edgekit.evaluate import scores
    from edgekit.tasks import TASKS

    fields: dict[str, Any] = {
        "task": recipe.task,
        "primary_metric": scores.PRIMARY_METRIC[recipe.task],
        "higher_is_better": scores.HIGHER_IS_BETTER[recipe.task],
    }
    if data_info is not None:
        fields["data"] = {**data_info, "sha256": data_key}
        if class_names is not None and TASKS[recipe.task].needs_labels:  # fidelity: no classes to name
            names = [str(name) for name in class_names]
            if recipe.task == "regression":
                fields["data"]["targets"] = names
            else:
                fields["data"]["classes"] = names
                if recipe.task in LABELLED_TASKS:
                    fields["data"]["labels_file"] = LABELS_FILE
    fields["benchmark"] = recipe.benchmark.model_dump()
    recipe_block = {"name": recipe.name, "path": str(recipe.path) if recipe.path else None, "sha256": recipe.sha256}
    return header(recipe_block, env, **fields)


def assemble(head: dict[str, Any], rows: list[dict], run_dir: Path | str | None = None, **fields: Any) -> dict[str, Any]:
    """The whole results file: ``head``, the baseline row (the first row), the row speedups are
    relative to, latency by target, ``fields``, and the rows last (the long part).

    With ``run_dir`` (the folder results.json is written into) each row's ``path`` is recorded
    relative to it (``relative_path``); readers resolve it with ``resolve_path``.
    """
    rows = _relative_rows(rows, run_dir)
    return {
        **head,
        "baseline": rows[0]["id"],
        "speedup_baseline": speedup_baseline(rows)["id"],
        "latency_by_target": latency_by_target(rows),
        **fields,
        "rows": rows,
    }


def partial(head: dict[str, Any], planned: list[PlannedRow], rows: list[dict], variants: list[Variant],
            run_dir: Path | str | None = None, **fields: Any) -> dict[str, Any]:
    """The results of an interrupted build: every planned row, in order.

    A row that was benchmarked is kept as it is. The others get status ``interrupted`` (or the
    ``failed`` status of a variant whose conversion or evaluation failed, as the bench stage
    would have written it), and keep the metrics of a variant that was already evaluated.

    Args:
        head: the build's header (``build_header``).
        planned: the build's plan (``plan``).
        rows: the rows benchmarked so far.
        variants: every variant converted (and evaluated, or failed) so far, the baseline first.
        run_dir: the run directory; row paths are recorded relative to it.
        **fields: what else the build knew (models, reused, build_seconds, ...).
    """
    from edgekit.targets import Measurement

    finished = {row["id"]: row for row in rows}
    built = {v.stem: v for v in variants}
    baseline = built.get("keras-fp32") or Variant(format="keras", precision="fp32", status=INTERRUPTED)
    out = []
    for row in planned:
        if row.id in finished:
            out.append(finished[row.id])
            continue
        variant = built.get(row.variant.stem)
        if variant is None:
            variant = Variant(format=row.variant.format, precision=row.variant.precision, model=row.variant.model,
                              parent=row.variant.parent, status=INTERRUPTED)
            m = Measurement(INTERRUPTED, "the build was interrupted before this variant was built")
        elif variant.status != "ok":
            m = Measurement(variant.status, variant.reason)
        else:
            m = Measurement(INTERRUPTED, "the build was interrupted before this row was benchmarked")
        out.append(make_row(row.id, variant, row.target, m, baseline))
    planned_ids = {row.id for row in planned}
    out += [row for row_id, row in finished.items() if row_id not in planned_ids]  # never expected; never lost
    return assemble(head, out, run_dir, interrupted=True, **fields)
