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
    """The training inputs and labels of an .npz (x_train/y_train or x/y; labels may be absent).
    Arrays named after a model's inputs or outputs (``x_train_<input>``, ``y_train_<output>``)
    come as one structured array each, a field per name (``edgekit.data.files.named_arrays``)."""
    from edgekit.data.files import named_arrays
    from edgekit.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        arrays = named_arrays(arrays, path)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"--data {path}: cannot read as .npz ({exc}); write it with numpy.savez(path, x=..., y=...)") from None
    except DataError as exc:
        raise InputError(f"--data {exc.message if hasattr(exc, 'message') else exc}") from None
    x_name = next((n for n in ("x_train", "x") if n in arrays), None)
    if x_name is None:
        raise InputError(f"--data {path}: expected arrays x_train (and y_train, x_test, y_test) or x (and y), or one per "
                         f"model input (x_train_<input>, ...), found: {', '.join(sorted(arrays)) or 'none'}; "
                         "save them with numpy.savez(path, x=..., y=...)")
    y_name = {"x_train": "y_train", "x": "y"}[x_name]
    return arrays[x_name], arrays.get(y_name)


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
    from edgekit.models.files import load_model_file

    if not Path(data).exists():
        raise InputError(f"--data {data}: not found; pass the .npz the model was trained on (numpy.savez(path, x=..., y=...)) "
                         "or its folder of images")
    from edgekit.convert import model_inputs, model_outputs
    from edgekit.models.saved_model import is_signature_model

    spec = _data_spec(Path(data), Path(model))
    # first: a subclassed model is traced on its sample shape
    x, y = _npz_arrays(Path(data)) if spec.source == "npz" else _folder_arrays(spec)
    notes: list[str] = []
    keras_model, flavour = load_model_file(Path(model), safe_mode, None if x.dtype.names else tuple(x.shape[1:]),
                                           (Path(recipe_dir).resolve(),), opt_out=OPT_OUT,
                                           log=lambda line: notes.append(line.removeprefix("[model] ")))
    made = "a SavedModel's serving signature" if is_signature_model(keras_model) else f"{flavour} file"
    inputs, outputs = model_inputs(keras_model), model_outputs(keras_model)
    if len(inputs) > 1 or len(outputs) > 1 or x.dtype.names or (y is not None and y.dtype.names):
        lines, doc = _several(Path(model), Path(data), made, inputs, outputs, x, y)
    else:
        lines, doc = _one(Path(model), Path(data), made, keras_model, x, y)
    # What loading found (a signature, a traced class) and the opt-out, before the closing line.
    lines[-1:-1] = [*(f"# {note}." for note in notes),
                    *(["# model.safe_mode: false (--no-safe-mode): the build runs the code this model carries or names."]
                      if not safe_mode else [])]
    doc = {"name": name or Path(model).stem, **doc, "data": {"source": spec.source, "path": _relative(Path(data), recipe_dir)},
           "model": {"file": _relative(Path(model), recipe_dir), **({"safe_mode": False} if not safe_mode else {})},
           "quantize": {"precisions": PRECISIONS}, "export": {"formats": _formats()}, "targets": ["cpu"]}
    _check_builds(keras_model, doc, Path(data), spec)
    return _dump(lines, doc)


def _data_spec(data: Path, model: Path):
    """The recipe's data section for ``--data``: an .npz, or a folder of images (one subfolder
    per class, or images alone for task fidelity) sized as the model file's input, as a build
    reads it (``edgekit.data.folders.fill_from_model``)."""
    from types import SimpleNamespace

    from edgekit.data.folders import fill_from_model
    from edgekit.recipe.schema import DataSpec

    if not data.is_dir():
        return DataSpec(source="npz", path=data.resolve())
    spec = DataSpec(source="images", path=data.resolve())
    fill_from_model(spec, SimpleNamespace(file=model.resolve(), input_shape=None, arch=None, params={}))
    return spec


def _folder_arrays(spec) -> tuple[np.ndarray, np.ndarray | None]:
    """The training images and class ids of an image folder (None: no class subfolders)."""
    from edgekit.data import load_dataset
    from edgekit.errors import EdgekitError

    labelled = any(p.is_dir() and not p.name.startswith(".") for p in Path(spec.path).iterdir())
    try:
        loaded = load_dataset(spec, 0, 200, task="classification" if labelled else "fidelity")
    except EdgekitError as exc:
        raise InputError(f"--data {spec.path}: {getattr(exc, 'message', None) or exc}") from None
    return loaded.x_train, (loaded.y_train if labelled else None)


def _one(model: Path, data: Path, made: str, keras_model, x, y) -> tuple[list[str], dict]:
    """The header lines and task of a model of one input and one output."""
    from edgekit.tasks import TASKS

    input_shape = tuple(keras_model.inputs[0].shape)[1:]
    output_shape = tuple(keras_model.outputs[0].shape)[1:]
    dtype = str(getattr(keras_model.inputs[0], "dtype", "float32")).replace("<dtype: '", "").rstrip("'>")
    fits = tuple(x.shape[1:]) == tuple(input_shape) or (None in input_shape and len(x.shape) - 1 == len(input_shape))
    if not fits:
        raise InputError(f"--data {data}: samples of shape {list(x.shape[1:])} do not fit {model.name}, whose "
                         f"input is {list(input_shape)}; pass the data the model was trained on")
    task, why = pick_task(input_shape, output_shape, y)
    width = output_shape[-1] if output_shape else 1
    free = f"; free dimensions fixed at the data's {list(x.shape[1:])}" if None in input_shape else ""
    lines = [
        f"# Starter recipe written by `edgekit init` from {model.name} and {data.name}.",
        f"# model: input {list(input_shape)} ({dtype}), output {list(output_shape)} (width {width}); {made}{free}.",
        f"# task {task}: {why}; metric {TASKS[task].primary_metric}.",
        "# Check it with `edgekit validate`, then `edgekit build`.",
    ]
    return lines, {"task": task}


def _several(model: Path, data: Path, made: str, inputs, outputs, x, y) -> tuple[list[str], dict]:
    """The header lines, task and per-output tasks of a model of several inputs or outputs: one
    data array per input name, labels per output name (an output without labels is scored
    against the Keras model). Refuses, in one line, data that names other inputs or outputs."""
    from edgekit.tasks import TASKS

    names = [i.name for i in inputs]
    fields = list(x.dtype.names or [])
    if len(inputs) > 1 and sorted(fields) != sorted(names):
        shown = ", ".join(f"{i.name} {list(i.shape[1:])}" for i in inputs)  # the shapes tell which is which
        raise InputError(f"--data {data}: {model.name} takes inputs {shown}; expected one array per input named "
                         f"after it ({', '.join(f'x_train_{n}' for n in names)}, or x_<input>), found "
                         f"{', '.join(f'x_train_{f}' for f in fields) if fields else 'one array x'}")
    for info in inputs:
        got = tuple(x.dtype[info.name].shape) if fields else tuple(x.shape[1:])
        want = tuple(info.shape[1:])
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            raise InputError(f"--data {data}: input {info.name}: samples of shape {list(got)} do not fit {model.name}'s "
                             f"{list(want)}; pass the data the model was trained on")
    out_names = [o.name for o in outputs]
    heads: dict[str, str] = {}
    whys = []
    if y is not None and not y.dtype.names and len(outputs) > 1:
        raise InputError(f"--data {data}: one label array y for {len(outputs)} outputs ({', '.join(out_names)}); label each "
                         f"output by name ({', '.join(f'y_train_{n}' for n in out_names)}), or leave y out to score every "
                         "output against the Keras model (task fidelity)")
    if y is not None and y.dtype.names:
        unknown = [n for n in y.dtype.names if n not in out_names]
        if unknown:
            raise InputError(f"--data {data}: labels y_train_{unknown[0]} name no output of {model.name}; its outputs "
                             f"are {', '.join(out_names)}")
        shapes = {o.name: tuple(o.shape[1:]) for o in outputs}
        for name in out_names:
            if name in y.dtype.names:
                head, why = pick_task((), shapes[name], y[name])
                heads[name], _ = head, whys.append(f"{name}: {head} ({why})")
    if y is None:
        task = "fidelity"
        whys.append("the data holds no labels: every output of every artifact is scored against the Keras model's")
    elif heads:
        task = next(iter(heads.values()))
    else:  # several inputs, one output, one label array
        task, why = pick_task((), tuple(outputs[0].shape[1:]), y)
        whys.append(why)
    unlabelled = [n for n in out_names if n not in heads] if heads else []
    lines = [f"# Starter recipe written by `edgekit init` from {model.name} and {data.name}.",
             "# model inputs: " + ", ".join(f"{i.name} {list(i.shape[1:])} ({i.dtype.name})" for i in inputs)
             + f"; {made}" + ("; free dimensions fixed at the data's shape" if any(i.free for i in inputs) else "") + ".",
             "# model outputs: " + ", ".join(f"{o.name} {list(o.shape[1:])}" for o in outputs)
             + ("; each scored on its own, the row's headline is the worst" if len(outputs) > 1 else "") + ".",
             f"# task {task}, metric {TASKS[task].primary_metric}: {'; '.join(whys)}."]
    if unlabelled:
        lines.append(f"# no labels for {', '.join(unlabelled)}: scored against the Keras model's outputs (snr_db).")
    lines.append("# Check it with `edgekit validate`, then `edgekit build`.")
    doc: dict = {"task": task}
    others = {n: t for n, t in heads.items() if t != task}
    if others:
        doc["outputs"] = others
    return lines, doc


def _check_builds(keras_model, doc: dict, data: Path, spec) -> None:
    """Refuse, in one line, a recipe whose data the build would refuse for this model: the data
    loaded as the build loads it (``spec``), then the model's inputs and outputs checked against it."""
    from edgekit.data import load_dataset
    from edgekit.errors import EdgekitError
    from edgekit.train.fit import check_fits

    try:
        loaded = load_dataset(spec, 0, 200, task=doc["task"], output_tasks=doc.get("outputs"))
        check_fits(keras_model, loaded)
    except EdgekitError as exc:
        raise InputError(f"--data {data}: {getattr(exc, 'message', None) or exc}") from None


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
    from edgekit.recipe.schema import load_recipe

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
