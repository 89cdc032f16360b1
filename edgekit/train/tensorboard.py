"""TensorBoard logs of a build: training and every fine-tuning step (prune, cluster, QAT) write
scalars per epoch and the graph under ``runs/<name>/tensorboard/<model>/``, and the final
results table is written as TensorBoard hparams (one session per row) under
``runs/<name>/tensorboard/results/``, so ``tensorboard --logdir runs/`` compares runs.

The logs are cheap on purpose: no histograms, no profiling, one write per epoch. Writing them
needs the ``tensorboard`` package (``pip install 'keras-edgekit[tensorboard]'``); without it the build
says so in one line and goes on.

Cached stages: the train and compress stages keep their logs in their cache entry (a folder
``tensorboard/`` beside the model) and copy them into the run directory when the entry is
reused, so the run directory always shows the logs of the very training that made its
models. An entry made with ``--no-tensorboard``, or while TensorBoard was not installed, holds
none: the build says so (one line per model) and its run directory gets none until a fresh
training (``--fresh``) writes them.

The trained model's folder is named after the model (``cnn``, ``mobilenet_v2``, a model file's
or builder's name: ``log_name``), each compressed model's after itself (``pruned80``).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

#: the run directory's folder of TensorBoard logs (pipeline.RUN_FILES lists it)
TENSORBOARD_DIR = "tensorboard"
#: the folder, inside a train or compress cache entry, that keeps its logs
ENTRY_DIR = "tensorboard"
#: where the final table goes, beside the models' folders
RESULTS_DIR = "results"


def available() -> bool:
    """Whether TensorBoard logs can be written here (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


#: the one line of a build that cannot write TensorBoard logs
NOT_INSTALLED = ("[tensorboard] not installed: no TensorBoard logs of training, fine-tuning or the results "
                 "(pip install 'keras-edgekit[tensorboard]')")


def model_dir(root: Path | None, model: str) -> Path | None:
    """``root/<model>`` (a model's log folder), or None when logs are off (``root`` None)."""
    return Path(root) / model if root is not None else None


def log_name(source: str) -> str:
    """The log folder of the trained model, named after it: a zoo model's name (``cnn``), a model
    file's stem (``my_model`` of ``models/my_model.keras``), a builder's ``module.function``;
    characters a folder name should not hold become ``_``."""
    text = str(source)
    if "/" in text or "\\" in text or text.endswith((".keras", ".h5")):
        text = Path(text).stem if text.endswith((".keras", ".h5")) else Path(text).name
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace(":", "."))
    return name.strip(".") or "model"


def say_if_missing(log) -> None:
    """The build's one line when TensorBoard is not installed (nothing when it is)."""
    if not available():
        log(NOT_INSTALLED)


def callbacks(log_dir: Path | None, log=None) -> list:
    """tf_keras callbacks that log to ``log_dir`` (a fresh folder: an earlier run's logs are
    removed), or none when ``log_dir`` is None or TensorBoard is not installed (the build said
    so once: ``say_if_missing``)."""
    if log_dir is None or not available():
        return []
    import tf_keras as keras

    shutil.rmtree(log_dir, ignore_errors=True)
    # Scalars once per epoch and the model's (conceptual) graph; histograms and the profiler
    # cost time on every build and are what a user would turn on by hand. The op graph of the
    # train function would need batch hooks (a Python call per batch): left out.
    return [keras.callbacks.TensorBoard(str(log_dir), histogram_freq=0, write_graph=True, write_images=False,
                                        update_freq="epoch", profile_batch=0)]


def keep(log_dir: Path | None, entry: Path) -> None:
    """Copy a stage's logs into its cache entry folder (``store``), when there are any."""
    if log_dir is not None and Path(log_dir).is_dir():
        shutil.copytree(log_dir, Path(entry) / ENTRY_DIR)


def restore(entry: Path, log_dir: Path | None, log=None, model: str = "") -> None:
    """Copy a reused cache entry's logs into the run directory (``load``), when logs are on; an
    entry without logs is said in one line through ``log``."""
    source = Path(entry) / ENTRY_DIR
    if log_dir is None:
        return
    if not source.is_dir():
        if log is not None:
            log(f"[tensorboard] {model or Path(log_dir).name}: no TensorBoard logs: its training came from the cache, "
                "made without them (--no-tensorboard, or TensorBoard not installed then); --fresh trains again and "
                "writes them")
        return
    shutil.rmtree(log_dir, ignore_errors=True)
    shutil.copytree(source, log_dir)


def write_results(results: dict, root: Path) -> Path | None:
    """The final table as TensorBoard hparams: one session per row under ``root/results/<row id>``,
    its hparams the row's model, format, precision, target, status and the recipe's name, its
    metrics the primary metric, its delta, size in bytes, p50 latency (ms) and speedup. Returns
    the folder, or None when TensorBoard is not installed.

    Written with TensorBoard's record writer and protos on a plain file, not ``tf.summary`` nor
    TensorBoard's EventFileWriter (which makes its folder through ``tf.io.gfile``, importing
    TensorFlow): a fully cached rebuild never imports TensorFlow, and this must not either.
    """
    if not available():
        return None
    import socket
    import time

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder = Path(root) / RESULTS_DIR
    shutil.rmtree(folder, ignore_errors=True)
    metric = results.get("primary_metric") or "metric"
    name = (results.get("recipe") or {}).get("name") or ""
    now = time.time()
    for row in results.get("rows", []):
        hparams = {"recipe": name, "model": row.get("model") or "", "format": row.get("format") or "",
                   "precision": row.get("precision") or "", "target": row.get("target") or "",
                   "status": row.get("status") or ""}
        session = folder / _safe(row["id"])
        session.mkdir(parents=True, exist_ok=True)
        values = [summary_pb2.Summary.Value(tag=key, simple_value=value)
                  for key, value in result_metrics(row, metric).items()]
        events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2"),
                  event_pb2.Event(wall_time=now, step=0,
                                  summary=summary_v2.hparams_pb(hparams, trial_id=f"{name}/{row['id']}")),
                  event_pb2.Event(wall_time=now, step=0, summary=summary_pb2.Summary(value=values))]
        with open(session / f"events.out.tfevents.{now:.6f}.{socket.gethostname()}", "wb") as handle:
            writer = RecordWriter(handle)
            for event in events:
                writer.write(event.SerializeToString())
    return folder


def result_metrics(row: dict, metric: str) -> dict[str, float]:
    """The numbers of one row that TensorBoard shows as its session's metrics (absent ones left out)."""
    lat = row.get("latency_ms") or {}
    values = {metric: (row.get("metrics") or {}).get(metric), f"delta_{metric}": (row.get("delta") or {}).get(metric),
              "size_bytes": row.get("size_bytes"), "p50_ms": lat.get("p50"), "speedup": row.get("speedup_vs_baseline")}
    return {key: float(value) for key, value in values.items() if isinstance(value, (int, float))}


def _safe(row_id: str) -> str:
    """A row id as one folder name (ids hold '@'; device names are plain words)."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in row_id)
