"""keras.datasets sets, read from the Keras download cache (``$KERAS_HOME/datasets``, default
``~/.keras/datasets``) with numpy; nothing is downloaded unless the recipe sets
``data.download: true``, which calls the Keras loader once to fill the cache."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from edgekit.errors import DataError

IMDB_WORDS = 10000  # most frequent words kept; rarer ones become the out-of-vocabulary id 2
IMDB_LENGTH = 200  # reviews cut or zero-padded (in front) to this many word ids


def cache_dir() -> Path:
    """Where Keras keeps downloaded datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _find(name: str, candidates: list[str], spec) -> Path:
    """The first cached candidate path; with data.download, fetch through Keras once first."""
    for relative in candidates:
        if (cache_dir() / relative).exists():
            return cache_dir() / relative
    if getattr(spec, "download", False):
        import keras

        getattr(keras.datasets, name).load_data()  # downloads into the cache
        for relative in candidates:
            if (cache_dir() / relative).exists():
                return cache_dir() / relative
    raise DataError(
        f"keras dataset {name}: expected the cached file {cache_dir() / candidates[0]}, which is not there; "
        f"on a machine with internet run python -c \"import keras; keras.datasets.{name}.load_data()\" and copy "
        f"{Path('~/.keras/datasets') / candidates[0]} here, or set data.download: true"
    )


def _images(x_train, y_train, x_test, y_test, names):
    def scale(x):
        x = x.astype(np.float32) / 255.0
        return x[..., None] if x.ndim == 3 else x

    return {"x_train": scale(x_train), "y_train": y_train.reshape(-1).astype(np.int64),
            "x_test": scale(x_test), "y_test": y_test.reshape(-1).astype(np.int64)}, names


def mnist(spec):
    """MNIST from mnist.npz: 60000 train / 10000 test, (28, 28, 1) in [0, 1]."""
    with np.load(_find("mnist", ["mnist.npz"], spec)) as f:
        return _images(f["x_train"], f["y_train"], f["x_test"], f["y_test"], [str(d) for d in range(10)])


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(spec):
    """Fashion-MNIST from fashion-mnist/*.gz: 60000 train / 10000 test, (28, 28, 1) in [0, 1]."""
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    folder = _find("fashion_mnist", [f"fashion-mnist/{files[0]}"], spec).parent
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"keras dataset fashion_mnist: {folder} lacks {', '.join(missing)}; copy all four .gz files there")
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return _images(*(_idx(folder / f) for f in files), names)


def cifar10(spec):
    """CIFAR-10 from the extracted cifar-10-batches-py folder: 50000 train / 10000 test, (32, 32, 3)."""
    folder = _find("cifar10", ["cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py",
                               "cifar-10-batches-py_extracted/cifar-10-batches-py"], spec)

    def batch(name):
        # The archive's own format is a pickle; Keras reads it the same way.
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(d[b"labels"])

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return _images(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_test, y_test, names)


def imdb(spec):
    """IMDb reviews from imdb.npz as word-id sequences: 25000 train / 25000 test, positive or negative.

    Keras' own encoding (1 = start, 2 = out of vocabulary, words from 4 by frequency); ids of
    words past the 10000 most frequent become 2, and each review is cut to its last 200 ids
    or zero-padded in front. The ids are float32 like every input here: models for them
    need an embedding, and int8 quantization of ids is not meaningful.
    """
    with np.load(_find("imdb", ["imdb.npz"], spec), allow_pickle=True) as f:  # lists of ids: object arrays
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}

    def pad(reviews):
        out = np.zeros((len(reviews), IMDB_LENGTH), np.float32)
        for i, ids in enumerate(reviews):
            ids = np.asarray(ids[-IMDB_LENGTH:])
            ids = np.where(ids >= IMDB_WORDS, 2, ids)
            out[i, IMDB_LENGTH - len(ids):] = ids
        return out

    return {"x_train": pad(arrays["x_train"]), "y_train": arrays["y_train"].astype(np.int64),
            "x_test": pad(arrays["x_test"]), "y_test": arrays["y_test"].astype(np.int64)}, ["negative", "positive"]
