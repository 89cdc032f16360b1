"""A model or weights file reads nothing but itself: its type from its first bytes, and no
HDF5 object in it that points at another file.

Two ways a model file could make the loaders read other files, whatever safe mode says:

* HDF5 (``.h5``, and the ``model.weights.h5`` inside a ``.keras`` zip) lets a dataset keep its
  bytes in another file (external storage: ``/etc/passwd`` read as a Dense kernel), assemble
  itself from datasets of other files (a virtual dataset), or be a link into another file (an
  external link). A dataset may also name a compression filter that HDF5 loads as a plugin
  library. Keras writes none of these, so a file holding one is refused.
* A file can be two formats at once: an HDF5 file with a zip appended passes a zip check, and
  a zip can carry HDF5 at a user-block offset. The loaders and the safe-mode check would then
  read different models. The type is decided by the first bytes, and a file that the other
  format's reader would also accept is refused.

Nothing here loads a model; h5py only lists objects and their storage properties.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from edgekit.errors import ModelError, one_line

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
#: the HDF5 filters built into libhdf5 and h5py (deflate, shuffle, fletcher32, szip, nbit,
#: scaleoffset, lzf); any other id makes HDF5 look for a plugin library to load
BUILTIN_FILTERS = {1, 2, 3, 4, 5, 6, 32000}
_FIX = "save the model again with Keras (model.save / save_weights), which writes a self-contained file"


def file_kind(path: Path, what: str = "model.file") -> str | None:
    """"zip" or "hdf5" from the file's first bytes; None for anything else (no Keras loader
    builds a model from it, and the loader's own error says so).

    Raises:
        ModelError: a file that is both (a zip with an HDF5 signature at a user-block offset, an
            HDF5 file with a zip appended), or HDF5 or zip behind bytes of something else.
    """
    import h5py

    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
    zip_head, hdf5_head = head.startswith(ZIP_MAGICS), head.startswith(HDF5_MAGIC)
    try:
        as_hdf5 = hdf5_head or bool(h5py.is_hdf5(str(path)))  # HDF5 also finds a signature at 512, 1024, ...
    except Exception:  # noqa: BLE001 - unreadable as HDF5: it is not one
        as_hdf5 = False
    as_zip = zip_head or zipfile.is_zipfile(path)  # a zip's directory sits at its end: a prefix passes
    if as_hdf5 and as_zip:
        first = "a zip archive" if zip_head else "an HDF5 file" if hdf5_head else "neither"
        raise ModelError(f"{what}: {path} is both a zip archive and an HDF5 file (it starts as {first}); the "
                         f"loaders and the safe-mode check could read different models from it: {_FIX}")
    if (as_hdf5 and not hdf5_head) or (as_zip and not zip_head):
        kind = "an HDF5 file" if as_hdf5 else "a zip archive"
        raise ModelError(f"{what}: {path} holds {kind} behind other leading bytes (expected it to start with "
                         f"the {'HDF5' if as_hdf5 else 'zip'} signature); Keras never writes such a file: {_FIX}")
    return "hdf5" if as_hdf5 else "zip" if as_zip else None


def check_file(path: Path, what: str = "model.file") -> str | None:
    """Refuse a model or weights file that would make a loader read another file; return its
    kind (``file_kind``). A ``.keras`` zip's HDF5 members and an unzipped ``.keras`` folder's
    ``.h5`` files are checked as well.

    Raises:
        ModelError: one line naming the file, the HDF5 object and what it points at.
    """
    path = Path(path)
    if path.is_dir():
        for member in sorted(path.glob("*.h5")):
            check_hdf5(member, member, what)
        return None
    kind = file_kind(path, what)
    if kind == "hdf5":
        check_hdf5(path, path, what)
    elif kind == "zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    if member.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
                        continue
                # Keras reads its weights file out of the archive into memory the same way.
                check_hdf5(io.BytesIO(archive.read(info)), f"{path}:{info.filename}", what)
    return kind


def check_hdf5(source, shown: Path | str, what: str = "model.file") -> None:
    """Refuse an HDF5 file (a path or a file object) with a link into another file, a dataset
    stored in another file or assembled from other files, or a filter HDF5 would load as a plugin.

    Raises:
        ModelError: naming the object and what it points at.
    """
    import h5py

    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise ModelError(f"{what}: cannot read {shown} as HDF5 ({one_line(exc, 160, typed=False)}); "
                         "is it a complete file saved by Keras?") from None
    # The callbacks return what is wrong (a value other than None stops h5py's visit and is
    # returned); nothing is raised through h5py's C callbacks.
    with handle:
        if hasattr(handle, "visititems_links"):  # h5py >= 3.11
            found = handle.visititems_links(_link_problem)  # every link once, none followed into another file
        else:
            found = _each_link(handle, _link_problem)
        found = found or handle.visititems(_dataset_problem)  # every object once, hard-link cycles included
    if found:
        name, problem = found
        raise ModelError(f"{what}: {shown}: HDF5 object /{name} {problem}; a model file must hold its own "
                         f"data, so it is refused: {_FIX}")


def _link_problem(name: str, target) -> tuple[str, str] | None:
    import h5py

    if isinstance(target, h5py.ExternalLink):
        return name, f"is an external link to {target.filename}:{target.path}"
    if not isinstance(target, (h5py.HardLink, h5py.SoftLink)):
        return name, f"is a link of a kind HDF5 resolves outside the file ({type(target).__name__})"
    return None


def _dataset_problem(name: str, obj) -> tuple[str, str] | None:
    import h5py

    if not isinstance(obj, h5py.Dataset):
        return None
    if obj.external:
        files = ", ".join(sorted({str(entry[0]) for entry in obj.external}))
        return name, f"keeps its data in another file (external storage: {files})"
    if obj.is_virtual:
        files = ", ".join(sorted({source.file_name for source in obj.virtual_sources()}))
        return name, f"is a virtual dataset assembled from other files ({files})"
    plist = obj.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in BUILTIN_FILTERS:
            return name, f"is compressed with HDF5 filter {code}, which HDF5 would load as a plugin library"
    return None


def _each_link(root, callback):
    """``visititems_links`` for older h5py: every link of every group, each group once; the
    first value other than None that ``callback`` returns."""
    import h5py

    seen, stack = set(), [("", root)]
    while stack:
        prefix, group = stack.pop()
        for key in group:
            name = f"{prefix}{key}"
            target = group.get(key, getlink=True)
            if (found := callback(name, target)) is not None:
                return found
            if isinstance(target, h5py.HardLink):
                obj = group[key]
                address = h5py.h5o.get_info(obj.id).addr
                if isinstance(obj, h5py.Group) and address not in seen:
                    seen.add(address)
                    stack.append((name + "/", obj))
    return None
