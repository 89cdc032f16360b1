"""The points of a search space, each one trial: its settings and the recipe that builds it.

A trial is one variant: a model (the base one, or one compressed entry), one format, one
precision, and the settings that apply to it. Settings that do not apply are dropped
(calibration for fp32, a format's option for another format), so two points that would build
the same thing are one trial, with one id: the first 10 hex digits of the sha256 of its
settings. The trial's recipe is the search's recipe with the section removed and those settings
written in; it is a normal recipe (``edgekit build`` of it reproduces the trial's row).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgekit.compress.spec import CompressEntry
from edgekit.formats import FORMATS
from edgekit.tasks import TASKS

#: precisions whose converters read the calibration subset (quantize.calibration_samples)
CALIBRATED = ("int8", "int8-mixed", "int16x8")
#: space dimensions that set a format's option of this name, where the format's options have it
FORMAT_OPTIONS = {"per_channel": "per_channel", "calibration_method": "calibrate_method"}
#: the dimensions in the order they are read
DIMENSIONS = ("prune", "cluster", "qat", "format", "precision", "calibration_samples", "per_channel",
              "calibration_method", "mixed_max_drop")


@dataclass(frozen=True)
class Trial:
    """One point of the space, canonical: ``settings`` holds only what applies to it."""

    settings_json: str

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.settings_json.encode()).hexdigest()[:10]

    @property
    def compress(self) -> dict | None:
        """The trial's compress entry (prune / cluster / qat), or None for the base model."""
        entry = {k: self.settings[k] for k in ("prune", "cluster", "qat") if self.settings.get(k) is not None}
        return entry or None

    @property
    def model(self) -> str:
        return CompressEntry.model_validate(self.compress).name if self.compress else "base"

    @property
    def stem(self) -> str:
        """The trial's row id without its target: what ``Variant.stem`` calls it."""
        prefix = "" if self.model == "base" else f"{self.model}-"
        return f"{prefix}{self.settings['format']}-{self.settings['precision']}"

    @property
    def label(self) -> str:
        """The settings in a few words: ``pruned50-tflite-int8 calibration_samples=64``."""
        extra = [f"{k}={v}" for k, v in self.settings.items() if k not in ("prune", "cluster", "qat", "format", "precision")]
        return " ".join([self.stem, *extra])


def dimensions(space, recipe) -> dict[str, list]:
    """Every dimension with the values it takes (a dimension the space leaves out: the recipe's
    own setting, one value)."""
    dims: dict[str, list] = {"prune": space.prune, "cluster": space.cluster, "qat": space.qat,
                             "format": space.format or list(recipe.export.formats),
                             "precision": space.precision or list(recipe.quantize.precisions)}
    for name in ("calibration_samples", "per_channel", "calibration_method", "mixed_max_drop"):
        if getattr(space, name) is not None:
            dims[name] = getattr(space, name)
    for path, values in space.settings.items():
        dims[f"settings:{path}"] = values
    return dims


def grid(space, recipe) -> Iterator[dict]:
    """Every combination of the dimensions' values, in order (raw: not yet canonical)."""
    dims = dimensions(space, recipe)
    for values in itertools.product(*dims.values()):
        yield dict(zip(dims, values))


def canonical(point: dict, recipe) -> Trial | str:
    """The trial a point builds, or why it builds nothing (a format without that precision,
    QAT at a precision other than int8, ...)."""
    fmt_name, precision = point["format"], point["precision"]
    fmt = FORMATS.get(fmt_name)
    qat = point.get("qat") is not None
    compressed = any(point.get(k) is not None for k in ("prune", "cluster", "qat"))
    if fmt is None:
        return f"no format {fmt_name}"
    if precision not in fmt.precisions:
        return f"{fmt_name} has no {precision} converter"
    if qat and precision != "int8":
        return "QAT models are exported at int8 only"
    if precision == "int8-mixed" and compressed:
        return "int8-mixed is searched for the base model only"
    if precision == "int8-mixed" and not TASKS[recipe.task].scored_validation:
        return f"int8-mixed needs a labelled validation split; task {recipe.task} has none"
    if compressed and recipe.task == "fidelity":
        return "task fidelity has no labels to fine-tune on"
    settings: dict[str, Any] = {k: point.get(k) for k in ("prune", "cluster", "qat") if point.get(k) is not None}
    settings.update(format=fmt_name, precision=precision)
    calibrated = precision in CALIBRATED and not qat
    if calibrated and "calibration_samples" in point:
        settings["calibration_samples"] = point["calibration_samples"]
    for name, option in FORMAT_OPTIONS.items():
        if name in point and calibrated and precision != "int16x8" and option in fmt.options.model_fields:
            settings[name] = point[name]
    if precision == "int8-mixed" and "mixed_max_drop" in point:
        settings["mixed_max_drop"] = point["mixed_max_drop"]
    for key, value in point.items():
        if key.startswith("settings:"):
            path = key[len("settings:"):]
            parts = path.split(".")
            if parts[0] == "export" and len(parts) > 2 and parts[1] in FORMATS and parts[1] != fmt_name:
                continue  # another format's option
            settings[key] = value
    return Trial(json.dumps(settings, sort_keys=True, default=str))


def trials(space, recipe) -> tuple[list[Trial], int]:
    """The distinct trials of the whole grid, in order, and how many points built nothing."""
    seen: dict[str, Trial] = {}
    invalid = 0
    for point in grid(space, recipe):
        trial = canonical(point, recipe)
        if isinstance(trial, str):
            invalid += 1
        else:
            seen.setdefault(trial.id, trial)
    return list(seen.values()), invalid


def document(base: dict, recipe, trial: Trial, spec) -> dict:
    """The trial's recipe (a plain mapping, as YAML would read it) from the search recipe's."""
    doc = copy.deepcopy(base)
    doc.pop("search", None)
    settings = trial.settings
    fmt_name, precision = settings["format"], settings["precision"]
    doc["name"] = f"{recipe.name[:80]}-{trial.id}"
    # Paths the loader resolved against the search recipe's folder: absolute, since the trial's
    # recipe lives elsewhere.
    if recipe.data.path is not None:
        doc["data"]["path"] = str(recipe.data.path)
    if recipe.model.file is not None:
        doc["model"]["file"] = str(recipe.model.file)
    if isinstance(recipe.model.params.get("weights"), str) and "params" in doc.get("model", {}):
        doc["model"]["params"]["weights"] = recipe.model.params["weights"]
    export = doc.setdefault("export", {})
    export["formats"] = [fmt_name]
    fmt = FORMATS[fmt_name]
    options = dict(export[fmt_name]) if isinstance(export.get(fmt_name), dict) else {}
    for extra in fmt.auto_precisions:  # one row per trial: no twin the format adds by itself
        if f"auto_{extra}" in fmt.options.model_fields and extra != precision:
            options[f"auto_{extra}"] = False
    for name, option in FORMAT_OPTIONS.items():
        if name in settings:
            options[option] = settings[name]
    if options:
        export[fmt_name] = options
    quantize = doc.setdefault("quantize", {})
    quantize.pop("max_drop", None)  # it would add an int8-mixed row to every trial
    if trial.compress:
        # The base model is built at fp32 only (converted once for every trial of the format).
        quantize["precisions"] = ["fp32"]
        doc["compress"] = [{**trial.compress, "precisions": [precision]}]
    else:
        quantize["precisions"] = [precision]
        doc.pop("compress", None)
    if "calibration_samples" in settings:
        quantize["calibration_samples"] = settings["calibration_samples"]
    if precision == "int8-mixed":
        quantize["max_drop"] = settings.get("mixed_max_drop", recipe.quantize.max_drop
                                            or spec.constraints.max_metric_drop or 0.01)
    for key, value in settings.items():
        if key.startswith("settings:"):
            _set_path(doc, key[len("settings:"):].split("."), value)
    # The constraints are the trial's budgets too, so `edgekit check` of the pick gates on them.
    defaults = doc.setdefault("check", {}).setdefault("defaults", {})
    if spec.constraints.max_metric_drop is not None:
        defaults["max_metric_drop"] = spec.constraints.max_metric_drop
    if spec.constraints.max_size_bytes is not None:
        defaults["max_size_bytes"] = spec.constraints.max_size_bytes
    if not needs_memory(spec):  # the per-row memory probe costs a process per row: only when asked for
        doc.setdefault("benchmark", {})["profile"] = False
    return doc


def needs_memory(spec) -> bool:
    return spec.objective == "memory" or spec.constraints.max_memory_bytes is not None


def _set_path(doc: dict, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = doc.get(part)
        if not isinstance(child, dict):
            child = doc[part] = {}
        doc = child
    doc[parts[-1]] = value


def prepare_folder(folder: Path, recipe) -> None:
    """What a trial's recipe finds next to it as the search recipe does: the device profiles of
    its targets (devices/) and a ``model.python`` builder's module."""
    from edgekit.targets import profiles

    folder.mkdir(parents=True, exist_ok=True)
    profiles.save_profiles(recipe.targets, profiles.search_dirs(recipe.path), folder / "devices")
    if recipe.model.python:
        top = recipe.model.python.split(":")[0].split(".")[0]
        source = Path(recipe.path).parent
        if (source / top).is_dir():
            shutil.copytree(source / top, folder / top, dirs_exist_ok=True)
        elif (source / f"{top}.py").is_file():
            shutil.copyfile(source / f"{top}.py", folder / f"{top}.py")
