"""``edgekit init``: a starter recipe that validates, from a model file and its data, or from a
zoo model and a builtin dataset.

From a model file the recipe is read off the model itself: its input shape and dtype, its
output width, and from those and the data the task (an output shaped like the input: anomaly;
one output per pixel: segmentation; labels that are not whole numbers: regression; no labels:
fidelity; else classification) and so the metric. Formats are those whose runtime is
installed here, precisions fp32 and int8. The file is written only where nothing is, unless
``force``, and only once ``load_recipe`` accepts it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekit.errors import InputError

#: exported precisions of a starter recipe: the float reference and full-integer int8
PRECISIONS = ["fp32", "int8"]


def _formats() -> list[str]:
    """The formats whose runtime imports here (a starter recipe should build on this machine)."""
    from edgekit.formats import FORMATS

    return [name for name, fmt in FORMATS.items() if fmt.installed_runtime()] or list(FORMATS)[:1]


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The training inputs and labels of an .npz (x_train/y_train or x/y; labels may be absent)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            x_name = next((n for n in ("x_train", "x") if n in names), None)
            if x_name is None:
                raise InputError(f"--data {path}: expected arrays x_train (and y_train, x_test, y_test) or x (and y), "
                                 f"found: {', '.join(sorted(names)) or 'none'}; save them with numpy.savez(path, x=..., y=...)")
            y_name = {"x_train": "y_train", "x": "y"}[x_name]
            return npz[x_name], (npz[y_name] if y_name in names else None)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"--data {path}: cannot read as .npz ({exc}); write it with numpy.savez(path, x=..., y=...)") from None


def pick_task(input_shape: tuple, output_shape: tuple, y: np.ndarray | None) -> tuple[str, str]:
    """(task, why) from the model's input and output shapes (batch axis left out) and the labels."""
    if y is None:
        return "fidelity", "the data holds no labels: every artifact is scored against the Keras model's outputs"
    if tuple(output_shape) == tuple(input_shape):
        return "anomaly", "the model outputs its input's shape (an autoencoder)"
    if len(output_shape) >= 3 and tuple(output_shape[:-1]) == tuple(input_shape[:-1]):
        return "segmentation", "the model outputs one class score vector per pixel"
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        return "regression", "the labels are not whole numbers"
    return "classification", "the labels are class ids"


#: how init's refusals name the opt-out of safe mode
OPT_OUT = "pass --no-safe-mode to edgekit init only if you trust this file"


def from_model(model: Path, data: Path, recipe_dir: Path, name: str | None = None, safe_mode: bool = True) -> str:
    """The YAML text of a recipe for an existing model file and its .npz data.

    ``safe_mode`` False loads the model as Keras does (``--no-safe-mode``): the recipe's folder
    is importable (a subclassed model's module), and the recipe says ``model.safe_mode: false``.
    """
    from edgekit.tasks import TASKS
    from edgekit.train import load_model_file

    if not Path(data).is_file():
        raise InputError(f"--data {data}: not found; pass the .npz the model was trained on (numpy.savez(path, x=..., y=...))")
    x, y = _npz_arrays(Path(data))  # first: a subclassed model is traced on its sample shape
    notes: list[str] = []
    keras_model, flavour = load_model_file(Path(model), safe_mode, tuple(x.shape[1:]), (Path(recipe_dir).resolve(),),
                                           opt_out=OPT_OUT, log=lambda line: notes.append(line.removeprefix("[model] ")))
    input_shape = tuple(keras_model.inputs[0].shape)[1:]
    output_shape = tuple(keras_model.outputs[0].shape)[1:]
    dtype = str(getattr(keras_model.inputs[0], "dtype", "float32")).replace("<dtype: '", "").rstrip("'>")
    fits = tuple(x.shape[1:]) == tuple(input_shape) or (None in input_shape and len(x.shape) - 1 == len(input_shape))
    if not fits:
        raise InputError(f"--data {data}: samples of shape {list(x.shape[1:])} do not fit {Path(model).name}, whose "
                         f"input is {list(input_shape)}; pass the data the model was trained on")
    task, why = pick_task(input_shape, output_shape, y)
    from edgekit.saved_model import is_signature_model

    made = "a SavedModel's serving signature" if is_signature_model(keras_model) else f"{flavour} file"
    width = output_shape[-1] if output_shape else 1
    lines = [
        f"# Starter recipe written by `edgekit init` from {Path(model).name} and {Path(data).name}.",
        f"# model: input {list(input_shape)} ({dtype}), output {list(output_shape)} (width {width}); {made}.",
        f"# task {task}: {why}; metric {TASKS[task].primary_metric}.",
        *(f"# {note}." for note in notes),
        *(["# model.safe_mode: false (--no-safe-mode): the build runs the code this model carries or names."]
          if not safe_mode else []),
        "# Check it with `edgekit validate`, then `edgekit build`.",
    ]
    doc = {
        "name": name or Path(model).stem,
        "task": task,
        "data": {"source": "npz", "path": _relative(Path(data), recipe_dir)},
        "model": {"file": _relative(Path(model), recipe_dir), **({"safe_mode": False} if not safe_mode else {})},
        "quantize": {"precisions": PRECISIONS},
        "export": {"formats": _formats()},
        "targets": ["cpu"],
    }
    return _dump(lines, doc)


def from_zoo(arch: str, dataset: str, name: str | None = None) -> str:
    """The YAML text of a recipe that trains zoo model ``arch`` on builtin ``dataset``."""
    from edgekit.data import BUILTIN_DATASETS
    from edgekit.errors import did_you_mean
    from edgekit.models import MODEL_TASKS, ZOO
    from edgekit.tasks import TASKS

    if arch not in ZOO:
        raise InputError(f"--arch {arch}: unknown zoo model{did_you_mean(arch, ZOO)}; see `edgekit models`")
    if dataset not in BUILTIN_DATASETS:
        raise InputError(f"--dataset {dataset}: unknown builtin dataset{did_you_mean(dataset, BUILTIN_DATASETS)}; "
                         f"choose one of: {', '.join(BUILTIN_DATASETS)} (or start from your files: --model and --data)")
    task = BUILTIN_DATASETS[dataset].task
    if task not in MODEL_TASKS[arch]:
        raise InputError(f"--arch {arch} fits {', '.join(MODEL_TASKS[arch])}, but {dataset} is a {task} dataset; "
                         "choose another model (`edgekit models` lists each one's tasks)")
    lines = [(f"# Starter recipe written by `edgekit init`: zoo model {arch} trained on {dataset} "
              f"({BUILTIN_DATASETS[dataset].description})."),
             f"# task {task}, metric {TASKS[task].primary_metric}. Check it with `edgekit validate`, then `edgekit build`."]
    doc = {
        "name": name or f"{dataset}_{arch}",
        "task": task,
        "data": {"source": dataset},
        "model": {"arch": arch},
        "train": {"epochs": 20, "early_stopping_patience": 5},
        "quantize": {"precisions": PRECISIONS},
        "export": {"formats": _formats()},
        "targets": ["cpu"],
    }
    return _dump(lines, doc)


def write(path: Path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` once it validates as a recipe; never over a file without ``force``.

    Raises:
        InputError: the file exists (and no ``force``), or the folder cannot be written.
        RecipeError: the text does not validate (a bug in ``init``: said as it is).
    """
    from edgekit.recipe import load_recipe

    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} exists; edgekit init never overwrites a file: pass --force, or choose another --out")
    if path.exists() and not path.is_file():
        raise InputError(f"{path} is not a file; choose another --out")
    tmp = path.with_name(f".{path.name}.init.tmp")  # beside it: its relative paths start at the same folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        load_recipe(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the recipe ({exc.strerror or exc}); choose a writable --out") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to the recipe's folder where it can be (recipes travel with their data)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(base).resolve())
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


def _dump(comments: list[str], doc: dict) -> str:
    import yaml

    return "\n".join(comments) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
