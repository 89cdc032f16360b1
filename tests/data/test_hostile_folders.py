"""Hostile image folders are refused in one line, in well under a second each: FIFOs and devices
named like images, link loops, links out of the folder, files too large to be images, and
walks past their bounds; what the README says is skipped (non-images) is skipped and counted.
Each read runs in a thread given 20 s, so that a regression fails instead of hanging the suite
(a FIFO named x.png used to block in the data hash forever)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.data import folder_walk
from edgekit.data.folders import folder_sha256, read_images
from edgekit.errors import DataError
from edgekit.recipe.schema import DataSpec


def _folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    return root


def _read(root: Path):
    """folder_sha256 (the data key) then read_images (the data), as a build reads the folder."""
    outcome: dict = {}

    def run():
        try:
            folder_sha256(root)
            outcome["value"] = read_images(root, DataSpec(source="images", path=str(root)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), f"reading {root} hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _refused(root: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        _read(root)
    line = str(info.value)
    assert "\n" not in line and all(f in line for f in fragments), line
    return line


@pytest.mark.parametrize("make, fragments", [
    (lambda root: os.mkfifo(root / "a" / "x.png"), ["a/x.png is a FIFO (named pipe)"]),
    (lambda root: (os.symlink(root / "a" / "y.png", root / "a" / "x.png"), os.symlink(root / "a" / "x.png", root / "a" / "y.png")),
     ["a/x.png is a link that leads nowhere (a loop"]),
    (lambda root: os.symlink(root / "missing.png", root / "a" / "x.png"), ["is a link that leads nowhere"]),
    (lambda root: os.symlink("/dev/zero", root / "a" / "x.png"), ["is a link out of the folder (to /dev/zero)"]),
    (lambda root: os.symlink(Path(__file__), root / "a" / "x.png"), ["is a link out of the folder (to ", "test_hostile_folders.py"]),
    (lambda root: os.symlink("/usr", root / "c"), ["c is a link out of the folder (to the folder /usr)"]),
    (lambda root: os.symlink("/", root / "a" / "everything"), ["a/everything is a link out of the folder"]),
])
def test_what_would_hang_loop_or_read_outside_is_refused(tmp_path, make, fragments):
    root = _folder(tmp_path / "images")
    make(root)
    _refused(root, *fragments, "an image folder is read only from its own regular files")


def test_a_device_or_socket_named_like_an_image_is_refused(tmp_path):
    import socket

    root = _folder(tmp_path / "images")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "a" / "x.png"))
    try:
        _refused(root, "a/x.png is a socket")
    finally:
        server.close()
    if os.geteuid() == 0:  # only root may make a device node
        (root / "a" / "x.png").unlink()
        os.mknod(root / "a" / "x.png", 0o600 | 0o020000, os.makedev(1, 5))
        _refused(root, "a/x.png is a character device")


def test_a_file_too_large_to_be_an_image_is_refused_unread(tmp_path):
    root = _folder(tmp_path / "images")
    with open(root / "b" / "huge.png", "wb") as handle:
        handle.truncate(folder_walk.MAX_FILE_BYTES + 1)  # sparse: no disk used, 1 GiB of zeros to read
    _refused(root, "b/huge.png is 1.0 GiB, more than the 1 GiB an image file may be")


def test_what_is_never_read_is_skipped_and_counted(tmp_path):
    """Non-images of any kind, and links that stay inside the folder, as the README says."""
    root = _folder(tmp_path / "images")
    os.mkfifo(root / "a" / "pipe.txt")
    os.symlink(root / "a" / "loop", root / "a" / "loop")  # a loop not named like an image
    os.symlink(Path(__file__), root / "a" / "notes")  # a file link out, not named like an image: never opened
    os.symlink(root / "b", root / "a" / "more")  # a folder link inside: skipped, never followed
    os.symlink(root / "b" / "0.png", root / "a" / "same.png")  # a file link inside: read
    arrays, names, info = _read(root)
    assert names == ["a", "b"] and len(arrays["x"]) == 7
    assert info["images"]["skipped_files"] == 4


def test_deep_nesting_reads_and_walks_are_bounded(tmp_path, monkeypatch):
    root = _folder(tmp_path / "images")
    deep = root / "a"
    for _ in range(40):  # the walk keeps its own stack: depth is no recursion
        deep = deep / "d"
    deep.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(deep / "deep.png")
    assert len(_read(root)[0]["x"]) == 7
    for i in range(30):
        (root / "b" / f"n{i}.txt").write_text("x")
    monkeypatch.setattr(folder_walk, "MAX_ENTRIES", 20)
    _refused(root, "holds more than 20 entries")
    monkeypatch.setattr(folder_walk, "MAX_ENTRIES", 10_000)
    monkeypatch.setattr(folder_walk, "WALK_S", -1.0)  # the clock is read every 1024 entries
    for i in range(1100):
        (root / "b" / f"m{i}.txt").write_text("x")
    _refused(root, "took over -1 s")
