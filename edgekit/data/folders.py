"""Image folders (``data: {source: images, path: DIR}``): one subfolder per class, as Keras'
``image_dataset_from_directory`` reads them, or a flat folder of sample inputs without labels.

Layouts, told apart by the folder's visible subfolders:

* ``DIR/<class>/...``: class ids from the sorted class folder names; images in deeper folders
  belong to the class folder above them; edgekit splits train/val/test itself.
* ``DIR/train/<class>/``, ``DIR/test/<class>/`` (and ``val/``, ``valid/`` or ``validation/``):
  the user's own splits, used as they are (class names from train/). Only when every visible
  subfolder is a split name: a class called "train" next to "car" and "bus" stays a class.
* ``DIR/*.png`` with no subfolders: label-free samples, ``{"x": images}`` (``task: fidelity``).

Every image is decoded one at a time into one preallocated float32 array ([N, H, W, C] in
[0, 1]), converted to the channels wanted (alpha dropped, grey replicated, as Keras' loaders do)
and resized (Pillow bilinear, stretched) to the model's input size: ``data.image_size`` and
``data.channels`` when the recipe sets them; else ``model.file``'s input (``fill_from_model``
reads it at recipe load); else the images' own size when they all agree (when they differ: a
zoo model's ``model.params.input_size``, which the model resizes to inside anyway).
Hidden files and folders are ignored; other files that are not images are skipped and counted.
EXIF orientation is not applied (neither Keras nor TensorFlow's decoders apply it).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data.folder_walk import IMAGE_SUFFIXES, Walk, open_image, unlistable
from edgekit.errors import DataError, one_line
from edgekit.models.files import file_input_shape

#: the tasks whose labels an image folder gives (fidelity needs none: a flat folder serves it)
IMAGE_TASKS = ("classification", "fidelity")
#: split folder name -> split
SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
#: Pillow modes with one channel (the 16-bit and float ones are scaled on their own)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit PNG and TIFF greys: 0..65535
_TARGET_MODE = {1: "L", 3: "RGB", 4: "RGBA"}
#: the share of this machine's memory the decoded float32 images may take
_MEMORY_SHARE = 0.5


def read_images(path: Path, spec, task: str = "classification") -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Read an image folder: ``{"x", "y"}``, ``{"x_train", "y_train", "x_test", "y_test"}`` (plus
    ``x_val``, ``y_val``), or ``{"x"}`` for a flat folder; the class names; and what was read
    (counts, size, channels, skipped files) for the data section of results.json.

    Raises:
        DataError: one line naming the folder or file: no images, an empty class folder, a
            file that does not decode, a test class that train/ lacks, sizes that disagree
            with no data.image_size, or images that would not fit in memory.
    """
    path = Path(path)
    check_folder(path)
    if task not in IMAGE_TASKS:
        raise DataError(f"data.source images labels each image by its class folder, which fits task classification "
                        f"(or fidelity), not {task}; save x and y to an npz for a {task} recipe")
    try:
        groups, names, skipped = _layout(path, Walk(path))
    except OSError as exc:  # a folder that cannot be listed
        unlistable(exc)
    if not names and task != "fidelity":
        raise DataError(f"data.path: {path} holds images but no class folders; task {task} needs one subfolder of "
                        "images per class (a flat folder is label-free samples, for task: fidelity)")
    files = [f for _, entries in groups.values() for f, _ in entries]
    headers = [_header(f) for f in files]
    size, channels, origin = _target(spec, path, files, headers)
    h, w = size
    _check_memory(len(files), h, w, channels, path)
    arrays: dict[str, np.ndarray] = {}
    for key, entries in groups.values():
        x = np.empty((len(entries), h, w, channels), np.float32)  # decoded into, one image at a time
        for i, (file, _) in enumerate(entries):
            x[i] = _decode(file, (w, h), channels)
        arrays["x" + key] = x
        if names:
            arrays["y" + key] = np.array([label for _, label in entries], np.int64)
    modes = Counter(mode for _, mode in headers)
    info = {"images": {"files": len(files), "skipped_files": skipped, "layout": _describe(groups, names),
                       "image_size": [h, w], "channels": channels, **origin,
                       "resized": sum(s != (w, h) for s, _ in headers), "modes": dict(sorted(modes.items())),
                       "resize": "bilinear (Pillow), stretched"}}
    return arrays, names, info


def check_folder(path: Path) -> None:
    """A folder, not a file or nothing (the other data sources take files)."""
    if path.is_file():
        raise DataError(f"data.path: {path} is a file; source images reads a folder of images with one "
                        "subfolder per class: set data.path to that folder (or source: npz / csv for a file)")
    if not path.is_dir():
        raise DataError(f"data.path: folder not found: {path}; check the path (relative paths start at the recipe's folder)")


def folder_sha256(path: Path) -> str:
    """SHA-256 of what ``read_images`` reads: every image's path relative to ``path`` and its
    content hash (``cache.file_sha256``), plus the names of the skipped files; so the data stage's key
    changes when an image changes, is added, removed or moved to another class."""
    path = Path(path)
    images, skipped = _walk(path, Walk(path))
    digest = hashlib.sha256()
    for file in images:
        try:
            with open_image(file) as handle:  # checked first: a FIFO named x.png blocked here forever
                size, content = os.fstat(handle.fileno()).st_size, hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    content.update(block)
        except OSError as exc:
            raise DataError(f"data.path: {file}: cannot read ({exc.strerror or exc}); check its permissions") from None
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0{content.hexdigest()}".encode())
    for file in skipped:
        digest.update(f"skipped {file.relative_to(path).as_posix()}\0".encode())
    return digest.hexdigest()


def fill_from_model(data, model) -> None:
    """Record the model's input in ``data`` where the recipe leaves the image size or channels unset.

    ``model.file``: its input layer (read as JSON, without TensorFlow) sets ``data.image_size``
    and ``data.channels``. A zoo model's ``model.params.input_size`` is a resize inside the
    model (edgekit.models.applications), so the images keep their own size and input_size is
    used only when their sizes disagree (the model would resize them to it anyway). Called by
    ``load_recipe``, since ``load_dataset`` sees only the data section; what was found is kept
    in ``data._model_input``, which the data stage's key includes.
    """
    found = _model_input(model)
    if found is None:
        return
    size, channels, source = found
    record: dict[str, Any] = {"from": source}
    if source in ("model.file", "model.input_shape"):
        if data.image_size is None and size is not None:
            data.image_size = size
            record["image_size"] = list(size)
        if data.channels is None and channels is not None:
            data.channels = channels
            record["channels"] = channels
    elif data.image_size is None and size is not None:
        record["fallback_size"] = list(size)
    if len(record) > 1:
        data._model_input = record


def _model_input(model) -> tuple[tuple[int, int] | None, int | None, str] | None:
    shape = None
    chosen = getattr(model, "input_shape", None)
    if isinstance(chosen, list) and len(chosen) == 3:  # the recipe's choice for a model with free dimensions
        shape, source = list(chosen), "model.input_shape"
    elif getattr(model, "file", None) is not None:
        shape, source = file_input_shape(Path(model.file)), "model.file"
    elif getattr(model, "arch", None) is not None:
        given = (model.params or {}).get("input_size")
        source = "model.params.input_size"
        if isinstance(given, int) and not isinstance(given, bool) and given > 0:
            shape = [given, given, None]
    if not shape or len(shape) != 3:
        return None  # no model info, or not an image model (one input [H, W, C])
    size = (shape[0], shape[1]) if all(isinstance(v, int) and 0 < v <= 16_384 for v in shape[:2]) else None
    channels = shape[2] if shape[2] in _TARGET_MODE else None
    return (size, channels, source) if size or channels else None


def _walk(folder: Path, walk: Walk) -> tuple[list[Path], list[Path]]:
    """(image files, skipped entries) under ``folder``, sorted, hidden names left out
    (``folder_walk``: what is refused, what is skipped, and the bounds on a walk)."""
    return walk.images(folder)


def _subfolders(folder: Path, walk: Walk) -> list[Path]:
    return walk.level(folder)[0]


def _layout(path: Path, walk: Walk) -> tuple[dict[str, tuple[str, list[tuple[Path, int]]]], list[str], int]:
    """split -> (array key suffix, [(file, class id)]), the class names, how many files were skipped."""
    folders = _subfolders(path, walk)
    direct, skipped_direct = _direct_files(path, walk)
    if not folders:
        if not direct:
            raise DataError(f"data.path: no images ({', '.join(IMAGE_SUFFIXES)}) in {path}"
                            f"{_skipped_note(skipped_direct)}; put one subfolder of images per class there")
        return {"all": ("", [(f, -1) for f in direct])}, [], skipped_direct
    if direct:
        raise DataError(f"data.path: {path} holds {len(direct)} images (e.g. {direct[0].name}) next to the folders "
                        f"{', '.join(f.name for f in folders[:4])}; move them into a class folder, or keep only images "
                        "for label-free samples")
    splits = {f.name: f for f in folders if f.name.lower() in SPLIT_NAMES}
    if len(splits) < len(folders):  # class folders (one of them may be called "train" or "test")
        entries, names, skipped = _classes(path, None, walk)
        return {"all": ("", entries)}, names, skipped + skipped_direct
    if "train" not in {SPLIT_NAMES[n.lower()] for n in splits}:
        raise DataError(f"data.path: {path} has {', '.join(f'{n}/' for n in splits)} but no train/; "
                        "add train/ with one subfolder per class (or put the class folders directly in the folder)")
    by_split: dict[str, Path] = {}
    for name, folder in splits.items():
        split = SPLIT_NAMES[name.lower()]
        if split in by_split:
            raise DataError(f"data.path: {path} has both {by_split[split].name}/ and {name}/ for the {split} split; keep one")
        by_split[split] = folder
    train, names, skipped = _classes(by_split["train"], None, walk)
    groups = {"train": ("_train" if "test" in by_split else "", train)}
    for split in ("val", "test"):
        if split in by_split:
            entries, _, more = _classes(by_split[split], names, walk)
            groups[split] = ("_" + split, entries)
            skipped += more
    return groups, names, skipped + skipped_direct


def _direct_files(folder: Path, walk: Walk) -> tuple[list[Path], int]:
    _, images, skipped = walk.level(folder)
    return images, len(skipped)


def _classes(folder: Path, known: list[str] | None, walk: Walk) -> tuple[list[tuple[Path, int]], list[str], int]:
    """One class per subfolder of ``folder`` (images in deeper folders included); ``known``: the
    training split's classes, which a val or test split must stay within."""
    classes = _subfolders(folder, walk)
    direct, skipped = _direct_files(folder, walk)
    if direct:
        raise DataError(f"data.path: {folder} holds {len(direct)} images (e.g. {direct[0].name}) next to its class "
                        "folders; move them into the folder of their class")
    if not classes:
        raise DataError(f"data.path: {folder} has no class folders; expected one subfolder of images per class")
    names = [c.name for c in classes]
    if known is not None and (extra := [n for n in names if n not in known]):
        raise DataError(f"data.path: {folder}/{extra[0]} is a class that {folder.parent / 'train'} lacks; "
                        f"add train/{extra[0]} images or remove that folder (train classes: {', '.join(known[:10])})")
    index = {name: i for i, name in enumerate(known if known is not None else names)}
    entries = []
    for cls in classes:
        images, more = _walk(cls, walk)
        skipped += len(more)
        if not images:
            raise DataError(f"data.path: class folder {cls} has no images ({', '.join(IMAGE_SUFFIXES)})"
                            f"{_skipped_note(len(more))}; add images or remove the folder")
        entries += [(f, index[cls.name]) for f in images]
    return entries, names if known is None else known, skipped


def _skipped_note(count: int) -> str:
    return f" (skipped {count} other files)" if count else ""


def _describe(groups: dict, names: list[str]) -> str:
    if not names:
        return "flat folder, no labels"
    splits = [s for s in groups if s != "all"]
    return f"class folders in {', '.join(f'{s}/' for s in splits)}" if splits else "class folders"


def _header(file: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode, read from the file's header only."""
    from PIL import Image

    try:
        with open_image(file) as handle, Image.open(handle) as image:
            return image.size, image.mode
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"data.path: {file}: more pixels than Pillow opens ({Image.MAX_IMAGE_PIXELS * 2:,}, its guard "
                        "against decompression bombs); downscale the image or remove it") from None
    except Exception as exc:  # noqa: BLE001 - any decoder error (truncated, unknown format): name the file
        raise DataError(f"data.path: {file}: cannot read as an image ({_reason(exc, file)}); remove or replace the file") from None


def _decode(file: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as float32 [H, W, C] in [0, 1]."""
    from PIL import Image

    try:
        with open_image(file) as handle, Image.open(handle) as image:
            if image.format == "JPEG":
                # Decode a large JPEG at 1/2 .. 1/8 scale (still at least ``size``): a photo of
                # tens of megapixels then never exists in memory at full size.
                image.draft(_TARGET_MODE[channels] if channels != 4 else "RGB", size)
            if image.mode in _WIDE_MODES or image.mode == "F":
                scale = 65535.0 if image.mode in _WIDE_MODES else 1.0
                grey = image.convert("F")
                if grey.size != size:
                    grey = grey.resize(size, Image.BILINEAR)
                array = np.asarray(grey, np.float32)[..., None] / scale
                array = np.repeat(array, min(channels, 3), axis=-1)
                return np.concatenate([array, np.ones_like(array[..., :1])], -1) if channels == 4 else array
            if image.mode == "P" or image.mode == "PA":
                image = image.convert("RGBA")  # a palette with transparency: resolve it before dropping alpha
            image = image.convert(_TARGET_MODE[channels]) if image.mode != _TARGET_MODE[channels] else image
            if image.size != size:
                image = image.resize(size, Image.BILINEAR)
            array = np.asarray(image, np.float32) / 255.0
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file whose header reads but whose pixels do not
        raise DataError(f"data.path: {file}: cannot decode the image ({_reason(exc, file)}); remove or replace the file") from None
    return array.reshape(size[1], size[0], channels)


def _reason(exc: Exception, file: Path) -> str:
    text = re.sub(r"\s*<_io\.\w+ name=[^>]*>", "", str(exc))  # Pillow names the open file object
    text = text.replace(f"'{file}'", "").replace(str(file), "").strip().rstrip(":")  # the line names the file once
    return one_line(text, 160) or type(exc).__name__


def _target(spec, path: Path, files: list[Path], headers: list) -> tuple[tuple[int, int], int, dict[str, str]]:
    """(height, width), channels, and where each came from."""
    size = getattr(spec, "image_size", None)
    channels = getattr(spec, "channels", None)
    hint = getattr(spec, "_model_input", None) or {}
    origin = {"size_from": hint["from"] if "image_size" in hint else "data.image_size",
              "channels_from": hint["from"] if "channels" in hint else "data.channels"}
    if size is None:
        sizes = {s for s, _ in headers}
        if len(sizes) == 1:
            width, height = sizes.pop()
            size, origin["size_from"] = (height, width), "the images"
        elif "fallback_size" in hint:
            size, origin["size_from"] = hint["fallback_size"], f"{hint['from']} (the images' sizes differ)"
        else:
            (w1, h1), (w2, h2) = sorted(sizes)[:2]
            first = next(f for f, (s, _) in zip(files, headers) if s == (w1, h1))
            second = next(f for f, (s, _) in zip(files, headers) if s == (w2, h2))
            raise DataError(f"data.path: the images in {path} come in {len(sizes)} sizes (height x width: {h1}x{w1} in "
                            f"{first.relative_to(path)}, {h2}x{w2} in {second.relative_to(path)}, ...); set "
                            "data.image_size: [height, width] (the model's input) to resize them all")
    if channels is None:
        channels = 1 if all(mode in _GREY_MODES for _, mode in headers) else 3
        origin["channels_from"] = "the images (1 when all are grey, else 3)"
    return (int(size[0]), int(size[1])), int(channels), origin


def _check_memory(count: int, h: int, w: int, channels: int, path: Path) -> None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every OS
        return
    need = count * h * w * channels * 4
    if need > _MEMORY_SHARE * total:
        raise DataError(f"data.path: {count} images of {h}x{w}x{channels} in {path} need {need / 1e9:.1f} GB as float32, "
                        f"more than half this machine's {total / 1e9:.1f} GB; set a smaller data.image_size or use fewer images")
