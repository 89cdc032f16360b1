"""Listing an image folder and opening its files, refusing in seconds what would hang, loop or
read outside it.

What a folder may hold besides images and subfolders, and what becomes of it:

* a hidden name: ignored (as before);
* a file that is not an image (by suffix), of any kind: skipped and counted, never opened;
* a FIFO, socket or device named like an image: refused (reading a FIFO blocks forever,
  /dev/zero never ends);
* a link: followed when it resolves to a file inside the folder; a link that leads nowhere
  (a loop, a missing target) or out of the folder is refused when named like an image or when
  it is a folder, skipped and counted otherwise; a link to a folder inside the folder is
  skipped and counted (never followed: no loop, no file read twice);
* an image file over MAX_FILE_BYTES: refused before it is read (a sparse 64 GB "x.png" kept
  the hash reading for minutes).

A walk looks at MAX_ENTRIES entries at most and stops after WALK_S seconds, each with one line;
it keeps its own stack (no recursion limit on nesting). Every image is opened once checked:
non-blocking, then confirmed a regular file on the open descriptor.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import BinaryIO, NoReturn

from edgekit.errors import DataError

#: what is read as an image (by suffix, case-insensitive); other files are skipped
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: the largest image file read (1 GiB: a 16k x 16k 16-bit RGBA TIFF is 2 GiB raw, PNG far less)
MAX_FILE_BYTES = 1 << 30
#: the most entries (files, folders, links) one walk looks at
MAX_ENTRIES = 2_000_000
#: the longest one walk may take
WALK_S = 60.0

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


def hidden(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


class Walk:
    """One listing of a folder tree under ``root``: the entry count and the clock it is held to."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.real_root = os.path.realpath(root)
        self.seen = 0
        self.started = time.monotonic()

    def level(self, folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
        """(subfolders, image files, skipped entries) directly in ``folder``, sorted by name;
        hidden names left out.

        Raises:
            DataError: an entry refused (see the module's list), a folder that cannot be listed,
                or the walk past MAX_ENTRIES or WALK_S.
        """
        folders, files, skipped = [], [], []
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            unlistable(exc)
        for entry in entries:
            self._count()
            if hidden(entry.name):
                continue
            path = Path(folder) / entry.name
            kind = self._kind(entry, path)
            if kind == "folder":
                folders.append(path)
            elif kind == "file" and is_image(entry.name):
                files.append(path)
            elif kind == "file":
                skipped.append(path)
            elif kind == "a link to a folder" or (kind != "folder link out" and not is_image(entry.name)):
                skipped.append(path)  # never followed or opened: a folder link inside, a link or special file not named as an image
            else:
                self._refuse(path, kind)
        return folders, files, skipped

    def images(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """(every image, every skipped entry) under ``folder``, each sorted."""
        images, skipped, stack = [], [], [Path(folder)]
        while stack:
            folders, files, more = self.level(stack.pop())
            images += files
            skipped += more
            stack += folders
        return sorted(images), sorted(skipped)

    def _kind(self, entry: os.DirEntry, path: Path) -> str:
        """"folder", "file", or why the entry is not one to read."""
        try:
            if not entry.is_symlink():
                mode = entry.stat(follow_symlinks=False).st_mode
                return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else _KINDS.get(
                    stat.S_IFMT(mode), "not a regular file")
            target = os.path.realpath(path)
            mode = os.stat(path).st_mode  # follows the link: fails on a loop or a missing target
        except OSError:
            return "a link that leads nowhere (a loop, or its target is missing)"
        if os.path.commonpath([target, self.real_root]) != self.real_root:
            return "folder link out" if stat.S_ISDIR(mode) else f"a link out of the folder (to {target})"
        if stat.S_ISDIR(mode):
            return "a link to a folder"  # inside: skipped, never followed
        return "file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")

    def _refuse(self, path: Path, kind: str) -> NoReturn:
        if kind == "folder link out":
            kind = f"a link out of the folder (to the folder {os.path.realpath(path)})"
        raise DataError(f"data.path: {path} is {kind}; an image folder is read only from its own regular files: "
                        "remove it, or copy what it points at into the folder")

    def _count(self) -> None:
        self.seen += 1
        if self.seen > MAX_ENTRIES:
            raise DataError(f"data.path: {self.root} holds more than {MAX_ENTRIES:,} entries; expected a folder of "
                            "images with one subfolder per class: point data.path at that folder")
        if self.seen % 1024 == 0 and time.monotonic() - self.started > WALK_S:
            raise DataError(f"data.path: listing {self.root} took over {WALK_S:.0f} s ({self.seen:,} entries so far); "
                            "is it on a slow network share, or much larger than the image folder meant? "
                            "copy the images to a local folder")


def open_image(file: Path) -> BinaryIO:
    """``file`` opened for reading, after checking on the open descriptor that it is a regular
    file of at most MAX_FILE_BYTES (opened non-blocking: a FIFO put in its place meanwhile
    cannot block).

    Raises:
        DataError: not a regular file, too large, or unreadable (naming the file).
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"data.path: {file}: cannot read ({exc.strerror or exc}); check its permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"data.path: {file} is {_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}; "
                            "an image folder is read only from its own regular files: remove it")
        if info.st_size > MAX_FILE_BYTES:
            raise DataError(f"data.path: {file} is {info.st_size / 2**30:.1f} GiB, more than the {MAX_FILE_BYTES >> 30} GiB "
                            "an image file may be; downscale it or remove it")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
        handle.raw.name = str(file)  # what a decoder's error names
        return handle
    except BaseException:
        os.close(fd)
        raise


def unlistable(exc: OSError) -> NoReturn:
    raise DataError(f"data.path: cannot list {exc.filename} ({exc.strerror or exc}); check its permissions") from None
