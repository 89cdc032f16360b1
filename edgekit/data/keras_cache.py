"""keras.datasets sets, read from the Keras download cache (``$KERAS_HOME/datasets``, default
``~/.keras/datasets``) with numpy; nothing is downloaded unless the recipe sets
``data.download: true``, which calls the Keras loader once to fill the cache.

Two of them come as pickles (the CIFAR-10 batches; the IMDb npz's object arrays), and a pickle
can run any code it names: a batch file planted in the cache ran code when a recipe used
``source: cifar10``. They are read with ``_Restricted``, which admits only what those files
hold (numpy arrays and their dtypes, besides the lists, dicts, bytes, str and ints a pickle
builds without naming anything): any other name refuses the file in one line."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from edgekit.errors import DataError, one_line

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


#: the only callables a CIFAR-10 batch or an IMDb object array names (numpy 1 and numpy 2 spellings)
_ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


def _latin1(text, encoding="latin1"):
    """What ``_codecs.encode`` does in a protocol-2 pickle of bytes written by Python 3: str -> bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {type(text).__name__} and {encoding!r}")
    return text.encode("latin1")


class _Restricted(pickle.Unpickler):
    """An unpickler that builds nothing but numpy arrays and plain Python data."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        return _latin1 if module == "_codecs" else super().find_class(module, name)


def _unpickle(handle, path: Path, name: str, encoding: str):
    """One pickle from ``handle`` through ``_Restricted``; a DataError naming the file otherwise."""
    try:
        return _Restricted(handle, encoding=encoding).load()
    except Exception as exc:  # noqa: BLE001 - refused, truncated or garbled: the same line
        reason = one_line(exc, 120, typed=False) if str(exc) else type(exc).__name__
        raise DataError(f"keras dataset {name}: {path}: not read ({reason}); expected the file as the dataset's archive "
                        f"holds it (numpy arrays, lists and ints): delete it and download the dataset again") from None


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
        # The archive's own format is a pickle (Keras reads it with pickle.load): read restricted.
        with open(folder / name, "rb") as f:
            d = _unpickle(f, folder / name, "cifar10", "bytes")
        data, labels = (d.get(b"data"), d.get(b"labels")) if isinstance(d, dict) else (None, None)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
                and isinstance(labels, list) and len(labels) == len(data) and all(isinstance(v, int) for v in labels)):
            raise DataError(f"keras dataset cifar10: {folder / name}: expected a CIFAR-10 batch (a dict with uint8 data of "
                            "N x 3072 and N integer labels); delete it and download the dataset again")
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels)

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
    arrays = _npz_restricted(_find("imdb", ["imdb.npz"], spec), "imdb", ("x_train", "y_train", "x_test", "y_test"))

    def pad(reviews):
        out = np.zeros((len(reviews), IMDB_LENGTH), np.float32)
        for i, ids in enumerate(reviews):
            if not (isinstance(ids, list) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ids)):
                raise DataError(f"keras dataset imdb: review {i} is {type(ids).__name__}, expected a list of word ids; "
                                "delete imdb.npz and download the dataset again")
            ids = np.asarray(ids[-IMDB_LENGTH:], np.int64)
            ids = np.where(ids >= IMDB_WORDS, 2, ids)
            out[i, IMDB_LENGTH - len(ids):] = ids
        return out

    return {"x_train": pad(arrays["x_train"]), "y_train": arrays["y_train"].astype(np.int64),
            "x_test": pad(arrays["x_test"]), "y_test": arrays["y_test"].astype(np.int64)}, ["negative", "positive"]


def _npz_restricted(path: Path, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz, object arrays unpickled by ``_Restricted`` (``np.load``
    with allow_pickle would run whatever their pickles name)."""
    import zipfile

    from numpy.lib import format as npy

    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                with archive.open(f"{key}.npy") as member:
                    version = npy.read_magic(member)
                    shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(member)
                    if dtype.hasobject:
                        arrays[key] = _unpickle(member, path, name, "ASCII")
                        continue
                with archive.open(f"{key}.npy") as member:
                    arrays[key] = npy.read_array(member, allow_pickle=False)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"keras dataset {name}: {path}: cannot read ({one_line(exc, 120, typed=False)}); expected the npz Keras downloads: "
                        "delete it and download the dataset again") from None
    x_ok = all(isinstance(arrays[k], np.ndarray) and arrays[k].ndim == 1 for k in keys)
    if not x_ok or any(len(arrays[f"x_{s}"]) != len(arrays[f"y_{s}"]) for s in ("train", "test")):
        raise DataError(f"keras dataset {name}: {path}: expected 1-D arrays x_train, y_train, x_test, y_test of matching "
                        "lengths; delete it and download the dataset again")
    return arrays
