"""Baselines for `edgekit check`: saving a baseline, reading one back, and deciding whether a
baseline can be compared with a run at all (results files are read by edgekit.results.read).

A baseline file (``edgekit baseline save``) wraps a run's results.json with the recipe hash, the
recipe text and the environment; a plain results.json is accepted as a baseline too.
Standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from edgekit.errors import InputError
from edgekit.results.read import load_results, read_json, validate_results

BASELINE_FORMAT = "edgekit-baseline"
BASELINE_VERSION = 1


def load_baseline(path: Path) -> dict:
    """Read a baseline file from `edgekit baseline save`, or a plain results.json; returns its results."""
    doc = read_json(Path(path), "baseline")
    if isinstance(doc, dict) and "format" in doc:
        if doc["format"] != BASELINE_FORMAT or doc.get("version") != BASELINE_VERSION:
            raise InputError(f"{path}: expected an {BASELINE_FORMAT} file version {BASELINE_VERSION}, received "
                             f"{doc['format']!r} version {doc.get('version')!r}; re-save it with `edgekit baseline save`")
        doc = doc.get("results")
    return validate_results(doc, path, "baseline")


def save_baseline(run_dir: Path, path: Path) -> dict:
    """Store a run's results with its recipe hash, recipe text and environment as a baseline file."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    recipe_copy = (run_dir if run_dir.is_dir() else run_dir.parent) / "recipe.yaml"
    doc = {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": str(run_dir.resolve()),
        "recipe": results["recipe"],
        "environment": results.get("environment") or {},
        "recipe_yaml": recipe_copy.read_text() if recipe_copy.is_file() else None,
        "results": results,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def ensure_comparable(results: dict, stored: dict, baseline_path: Path | str) -> None:
    """Refuse a baseline from another recipe, metric or baseline row: its numbers mean something else."""
    for key, label in (("primary_metric", "task metric"), ("baseline", "baseline row")):
        if results[key] != stored[key]:
            raise InputError(f"{baseline_path}: baseline {label} is {stored[key]!r} but the results' is {results[key]!r}; "
                             "save a baseline from a run of this recipe (edgekit baseline save RUN_DIR PATH)")
    name, old_name = results["recipe"].get("name"), stored["recipe"].get("name")
    if name != old_name:
        raise InputError(f"{baseline_path}: baseline is for recipe {old_name!r} but the results are for {name!r}; "
                         "pass that recipe's baseline, or save one with `edgekit baseline save RUN_DIR PATH`")
    if not {r["id"] for r in results["rows"]} & {r["id"] for r in stored["rows"]}:
        raise InputError(f"{baseline_path}: baseline shares no row id with the results; "
                         "save a baseline from a run of this recipe (edgekit baseline save RUN_DIR PATH)")


def environment_warnings(results: dict, stored: dict, absolute_latency: bool = False) -> list[str]:
    """Differences that make a comparison with the baseline less meaningful, one line each."""
    warnings = []
    sha, old_sha = results["recipe"].get("sha256"), stored["recipe"].get("sha256")
    if sha != old_sha:
        warnings.append(f"recipe differs from the baseline's (sha256 {str(sha)[:12]} vs {str(old_sha)[:12]}): "
                        "if the change is intended, re-save the baseline (edgekit baseline save RUN_DIR PATH)")
    # a results file may hold null where a value is missing (results/schema.py)
    env, old_env = results.get("environment") or {}, stored.get("environment") or {}
    now = {"python": env.get("python"), **(env.get("packages") or {})}
    old = {"python": old_env.get("python"), **(old_env.get("packages") or {})}
    changed = [f"{name} {old.get(name) or 'absent'} -> {now.get(name) or 'absent'}"
               for name in sorted(set(now) | set(old)) if name != "edgekit" and now.get(name) != old.get(name)]
    if changed:
        warnings.append(f"toolchain differs from the baseline's: {', '.join(changed)}; "
                        "accuracy and latency may move for that reason alone")
    machine, old_machine = (env.get("cpu"), env.get("isa")), (old_env.get("cpu"), old_env.get("isa"))
    if machine != old_machine and absolute_latency:
        warnings.append(f"absolute latency budgets compared across machines ({old_machine[0]} in the baseline, "
                        f"{machine[0]} now): they hold only on a pinned device")
    return warnings
