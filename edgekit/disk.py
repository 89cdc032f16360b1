"""A full disk is one line: which file could not be written, how much room is left where, and
what to do (exit 2), whichever stage ran into it and whichever library raised it.

The build's files go to three places: the run directory (--out), the stage cache
($EDGEKIT_CACHE_DIR) and temporary files ($TMPDIR: probes, TFLite Micro runs, conversions).
A full cache only costs the reuse (``Cache.put`` warns and the build goes on); the other two
stop the build. The cache is never harmed: an entry is written under a temporary name and
renamed into place only once complete, and an entry that could not be copied out for lack of
room is not the entry's fault (``Cache._read`` keeps it).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from edgekit.errors import InputError

#: the errors a full disk (or a quota, or a file-size limit) raises
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: how the same errors read once a library (TensorFlow, a worker's reply) turned them into text;
#: the last is Python's tempfile when no temporary folder can take its 4-byte probe file
NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded", "File too large", "No usable temporary directory")


def no_space(exc: BaseException | str | None) -> bool:
    """Whether ``exc`` (an exception, or a failed row's reason) says the disk was full."""
    if exc is None:
        return False
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
        return True
    return any(text in str(exc) for text in NO_SPACE_TEXTS)


def free_space(path: Path | str) -> str:
    """The room left on the file system that holds ``path`` (or its nearest existing folder)."""
    from edgekit.report.cells import human_size

    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{human_size(shutil.disk_usage(folder).free)} free"
    except OSError:
        return "free space unknown"


def full_disk_error(exc: BaseException | str, doing: str, run_dir: Path | None = None,
                    cache_dir: Path | None = None) -> InputError:
    """The one line for a full disk met during ``doing`` (e.g. "the convert stage").

    Names the file when the error does (and which of the build's places it belongs to), else
    the room left in each place the build writes to.
    """
    places = {"temporary files": (_temp_folder(), "free some space or set TMPDIR to a larger disk")}
    if run_dir is not None:
        places = {"run directory": (Path(run_dir), "free some space or choose another --out"), **places}
    if cache_dir is not None:
        places["stage cache"] = (Path(cache_dir), "free some space (edgekit cache clear) or set EDGEKIT_CACHE_DIR elsewhere")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else next(
        (text for text in NO_SPACE_TEXTS if text in str(exc)), "no space left")
    file = (getattr(exc, "filename2", None) or getattr(exc, "filename", None)) if isinstance(exc, OSError) else None
    again = "then run the same command again (finished stages are cached)"
    if file:
        where = next((name for name, (folder, _) in places.items() if _inside(Path(str(file)), folder)), None)
        fix = places[where][1] if where else "free some space"
        return InputError(f"disk full: could not write {file}{f' (the {where})' if where else ''} during {doing}: "
                          f"{free_space(file)} ({reason}); {fix}, {again}")
    room = ", ".join(f"{name} {folder}: {free_space(folder)}" for name, (folder, _) in places.items())
    return InputError(f"disk full during {doing} ({reason}); room left: {room}; free some space where it is "
                      f"short (or point --out, EDGEKIT_CACHE_DIR or TMPDIR at a larger disk), {again}")


def _temp_folder() -> Path:
    try:
        return Path(tempfile.gettempdir())
    except OSError:  # no candidate folder could take tempfile's probe file: full too
        return Path(os.environ.get("TMPDIR") or "/tmp")


def _inside(path: Path, folder: Path) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)
    except ValueError:
        return False
