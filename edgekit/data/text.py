"""Raw text in a csv: read the text and label columns, fit a vocabulary on the training split,
and turn every split into fixed-length token id sequences for an Embedding model.

Reading and featurizing are two steps because the vocabulary must be fitted on the training
split only: ``read_text`` returns the raw strings (an object array of shape [N, 1]) and
``load_dataset`` calls ``encode_splits`` after it has drawn the splits.

The tokenizer, kept small so a device can redo it in a few lines of any language:

- the text is NFKC-normalized (full-width letters, ligatures), typographic apostrophes become
  ``'`` and, with ``lowercase``, it is lower-cased;
- tokens are runs of word characters with inner apostrophes (``\\w+(?:'\\w+)*``, Unicode-aware):
  punctuation and whitespace separate tokens and are dropped;
- id 0 is padding (``[PAD]``), id 1 is out of vocabulary (``[UNK]``), then the training split's
  tokens seen at least ``min_count`` times, most frequent first (ties alphabetical), up to
  ``max_tokens`` ids in all;
- a sequence keeps ``sequence_length`` ids: longer ones lose ids at the front (``truncation:
  pre``) or the end (``post``), shorter ones get zeros in front (``padding: pre``) or after.

``vocab.txt`` in the run directory holds one token per line, line i = id i;
``tokenizer.json`` beside it holds these settings. Ids are float32 like every input array
here (exact up to 2**24); the text models take them as int32, and int8 artifacts keep the
int32 ids unquantized (``edgekit.convert.input_dtype``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DataError, did_you_mean

PAD, OOV = "[PAD]", "[UNK]"
VOCAB_FILE, TOKENIZER_FILE = "vocab.txt", "tokenizer.json"
TOKEN_PATTERN = r"\w+(?:'\w+)*"
_TOKEN = re.compile(TOKEN_PATTERN)
#: the longest csv field read (characters): far above any text a sequence model reads, and
#: low enough that a file without its closing quote fails with a line number, not a MemoryError
MAX_FIELD = 10_000_000
#: label values that mean "missing": a class named "nan" is almost always a hole in the file
_MISSING = {"", "na", "n/a", "nan", "null"}


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The tokens of one text (see the module doc)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return _TOKEN.findall(text.lower() if lowercase else text)


def read_text(path: Path, spec, task: str = "classification") -> tuple[dict[str, np.ndarray], list[str]]:
    """A UTF-8 csv with a header, a text column and a label column (classes, or a number for
    regression): raw texts as an object array of shape [N, 1] plus class ids, and the class names
    (sorted like ``read_csv`` sorts them)."""
    from edgekit.data.files import _is_float, class_ids

    rows, header = _rows(path)
    label = spec.label_column or ("label" if "label" in header else header[-1])
    if label not in header:
        raise DataError(f'{path}: label column "{label}" not in the header{did_you_mean(label, header)}; '
                        f'set data.label_column to one of: {", ".join(header)}')
    others = [name for name in header if name != label]
    text = spec.text_column or ("text" if "text" in header else (others[0] if others else None))
    if text is None or text not in header:
        raise DataError(f'{path}: text column "{text}" not in the header{did_you_mean(str(text), others)}; '
                        f'set data.text_column to one of: {", ".join(others) or "(no other column)"}')
    if text == label:
        raise DataError(f'{path}: data.text_column and data.label_column are both "{text}"; the label must be another column')
    text_at, label_at = header.index(text), header.index(label)
    texts, labels = [], []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns like the header, found {len(row)}; "
                            "quote texts that hold commas or line breaks (\"...\", with \"\" for a quote)")
        value = row[label_at].strip()
        if value.lower() in _MISSING:
            raise DataError(f"{path}:{line}: the label ({label}) is {'empty' if not value else repr(value)}; "
                            "every row needs a label: fill it in or drop the row")
        texts.append(row[text_at])
        labels.append(value)
    if not texts:
        raise DataError(f"{path}: no data rows after the header; expected one text and label per row")
    x = np.empty((len(texts), 1), dtype=object)
    x[:, 0] = texts
    if task == "regression":
        bad = next((v for v in labels if not _is_float(v) or not math.isfinite(float(v))), None)
        if bad is not None:
            raise DataError(f"{path}: regression target {label} has the value {bad!r}; expected finite numbers only")
        return {"x": x, "y": np.asarray([float(v) for v in labels], dtype=np.float32)}, [label]
    y, names = class_ids(labels)
    return {"x": x, "y": y}, names


def _rows(path: Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """(line number, row) of every non-empty data row, and the header; line numbers count
    physical lines, so a text with quoted line breaks still points at its own line."""
    previous = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD)
    start = 1
    try:
        raw = path.read_bytes()
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
        # Decoded whole (not streamed) so a bad byte's position is the file's, not a buffer's.
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        rows = []
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: byte {exc.start} is not UTF-8 ({exc.reason}); re-save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{start}: cannot read as CSV ({exc}); check the quotes around that row's text") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        csv.field_size_limit(previous)
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header row (e.g. text,label) and one row per text")
    header = [name.strip() for name in rows[0][1]]
    if len(set(header)) != len(header):
        twice = sorted({n for n in header if header.count(n) > 1})
        raise DataError(f"{path}: column(s) {', '.join(map(repr, twice))} appear twice in the header; give every column its own name")
    return rows[1:], header


def settings(spec) -> dict[str, Any]:
    """The tokenizer settings of the recipe's data section (what tokenizer.json records)."""
    return {"lowercase": spec.lowercase, "normalize": "NFKC", "pattern": TOKEN_PATTERN, "max_tokens": spec.max_tokens,
            "min_count": spec.min_count, "sequence_length": spec.sequence_length, "padding": spec.padding,
            "truncation": spec.truncation, "pad_id": 0, "oov_id": 1}


def fit_vocabulary(texts, spec) -> list[str]:
    """[PAD], [UNK], then the training texts' tokens seen ``min_count`` times or more, most
    frequent first (ties alphabetical, so the same texts always give the same ids)."""
    counts = Counter(token for text in texts for token in tokenize(str(text), spec.lowercase))
    kept = sorted((t for t, c in counts.items() if c >= spec.min_count), key=lambda t: (-counts[t], t))
    return [PAD, OOV, *kept[: spec.max_tokens - 2]]


def encode(texts, vocabulary: list[str], spec) -> np.ndarray:
    """Texts -> float32 ids of shape [N, sequence_length] (see the module doc)."""
    index = {token: i for i, token in enumerate(vocabulary)}
    length = spec.sequence_length
    out = np.zeros((len(texts), length), np.float32)
    for row, text in enumerate(texts):
        ids = [index.get(token, 1) for token in tokenize(str(text), spec.lowercase)]
        ids = ids[-length:] if spec.truncation == "pre" else ids[:length]
        if ids:
            if spec.padding == "pre":
                out[row, length - len(ids):] = ids
            else:
                out[row, : len(ids)] = ids
    return out


def encode_splits(spec, x_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray):
    """Fit the vocabulary on ``x_train``'s texts and encode the three splits.

    Returns:
        ((x_train, x_val, x_test) as id arrays, the vocabulary, the info record for results.json:
        the settings, the vocabulary's size and how well it covers each split).
    """
    train, val, test = (x.reshape(len(x)) for x in (x_train, x_val, x_test))
    vocabulary = fit_vocabulary(train, spec)
    if len(vocabulary) <= 2:
        raise DataError("data: the training texts hold no tokens (every text is empty or punctuation only); "
                        "check data.text_column")
    encoded = [encode(texts, vocabulary, spec) for texts in (train, val, test)]
    record: dict[str, Any] = {**settings(spec), "vocab_size": len(vocabulary), "fitted_on": "train",
                              "vocab_file": VOCAB_FILE, "empty_texts": {}, "oov_rate": {}, "truncated": {}}
    for name, texts, ids in zip(("train", "val", "test"), (train, val, test), encoded):
        lengths = np.array([len(tokenize(str(t), spec.lowercase)) for t in texts])
        real = ids[ids > 0]
        record["empty_texts"][name] = int((lengths == 0).sum())
        record["oov_rate"][name] = round(float((real == 1).mean()), 4) if real.size else 0.0
        record["truncated"][name] = int((lengths > spec.sequence_length).sum())
    return tuple(encoded), vocabulary, record


def write_vocabulary(run_dir: Path, data) -> None:
    """vocab.txt (line i = token of id i) and tokenizer.json (the settings) in the run directory
    for a text dataset; an earlier run's are removed for other data."""
    vocabulary = getattr(data, "vocabulary", None)
    files = (run_dir / VOCAB_FILE, run_dir / TOKENIZER_FILE)
    if not vocabulary:
        for path in files:
            path.unlink(missing_ok=True)
        return
    record = {key: value for key, value in data.info.get("tokenizer", {}).items()
              if key not in ("empty_texts", "oov_rate", "truncated")}
    for path, text in zip(files, ("".join(f"{token}\n" for token in vocabulary), json.dumps(record, indent=2) + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
