"""Raw text (``data: {source: text}``): csv reading, the vocabulary fitted on the training split,
id sequences, vocab.txt in the run directory, the text zoo models, and imdb from the Keras cache."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.data import load_dataset, text
from edgekit.errors import DataError, ModelError
from edgekit.recipe.schema import DataSpec

GOOD = ["great", "lovely", "sturdy", "superb"]
BAD = ["awful", "flimsy", "broken", "useless"]


def _reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Short reviews whose sentiment words decide the label, with commas, quotes, accents and a
    few quoted line breaks (what a real csv holds)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.choice(GOOD if i % 2 else BAD, 2)
        filler = rng.choice(['The box said "new", fine.', "Café bought, naïve me", "It arrived,\non Monday."])
        rows.append((f"{filler} The lamp is {words[0]} and {words[1]}!", label))
    return rows


def _write(path, rows, header=("text", "label")):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _load(path, **settings):
    return load_dataset(DataSpec(source="text", path=path, **settings), seed=0, calibration_samples=8)


def test_tokenizer_lowercases_normalizes_and_keeps_inner_apostrophes():
    assert text.tokenize("Don’t BUY it, the ﬁt is «awful»... 10/10 café") == [
        "don't", "buy", "it", "the", "fit", "is", "awful", "10", "10", "café"]
    assert text.tokenize("Hello World", lowercase=False) == ["Hello", "World"]


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path):
    rows = _reviews(60)
    rows[-1] = ("zzqx unseen words only here", "positive")  # lands in one split or another
    data = _load(_write(tmp_path / "r.csv", rows), sequence_length=12, val_fraction=0.2)
    assert data.x_train.shape[1:] == (12,) and data.x_train.dtype == np.float32
    assert data.vocabulary[:2] == [text.PAD, text.OOV]
    train_tokens = {t for row in data.x_train for t in np.asarray(data.vocabulary)[row[row > 0].astype(int)]}
    assert set(data.vocabulary[2:]) == train_tokens - {text.OOV}  # every token comes from train
    where = "train" if "zzqx" in data.vocabulary else "val/test"
    if where == "val/test":  # its words are then out of vocabulary (id 1) wherever it landed
        assert (np.concatenate([data.x_val, data.x_test]) == 1).any()
    info = data.info["tokenizer"]
    assert info["vocab_size"] == len(data.vocabulary) == data.info["vocab_size"] and info["fitted_on"] == "train"
    assert data.info["normalize"] == {"kind": "none"} and data.class_names == ["negative", "positive"]


def test_padding_and_truncation_sides(tmp_path):
    rows = [("a b c d e f", "x"), ("a b", "y")] * 4
    path = _write(tmp_path / "r.csv", rows)
    vocab = text.fit_vocabulary([r[0] for r in rows], DataSpec(source="text", path=path))
    ids = {t: vocab.index(t) for t in "abcdef"}
    for padding, truncation, long, short in [
        ("pre", "pre", "cdef", "00ab"), ("post", "post", "abcd", "ab00"), ("pre", "post", "abcd", "00ab")]:
        spec = DataSpec(source="text", path=path, sequence_length=4, padding=padding, truncation=truncation)
        got = text.encode(["a b c d e f", "a b"], vocab, spec)
        expect = [[ids.get(c, 0) for c in long], [ids.get(c, 0) for c in short]]
        np.testing.assert_array_equal(got, expect, err_msg=f"{padding}/{truncation}")


def test_quoted_newlines_commas_bom_and_chosen_columns(tmp_path):
    path = tmp_path / "r.csv"
    rows = [(f"id{i}", t, "shop", lab) for i, (t, lab) in enumerate(_reviews(40))]
    _write(path, rows, header=("id", "review", "source", "sentiment"))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's byte-order mark
    data = _load(path, text_column="review", label_column="sentiment")
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 40
    assert "café" in data.vocabulary and "monday" in data.vocabulary
    with pytest.raises(DataError, match=r'text column "reveiw" not in the header \(did you mean "review"\?\)'):
        _load(path, text_column="reveiw", label_column="sentiment")


@pytest.mark.parametrize("content, message", [
    (b"text,label\nfine,a\n\xff\xfe bad,b\n", r"r.csv:3: byte 18 is not UTF-8 .*re-save the file as UTF-8"),
    (b'text,label\n"two\nlines",a\nok,b,extra\n', r"r.csv:4: expected 2 columns like the header, found 3; quote texts"),
    (b"text,label\nfine,a\nnice,NaN\n", r"r.csv:3: the label \(label\) is 'NaN'; every row needs a label"),
    (b"text,label\nfine,a\nnice,\n", r"r.csv:3: the label \(label\) is empty"),
    (b"text,label\n" + b"!!!,a\n...,b\n,a\n?,b\n" * 3, r"the training texts hold no tokens"),
    (b"text,label\n" + b"good,a\n" * 20, r"classification needs at least two classes"),
    (b"", r"the file is empty; expected a header row"),
    (b"text,text\na,b\n", r"column\(s\) 'text' appear twice in the header"),
])
def test_bad_files_fail_in_one_line(tmp_path, content, message):
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        _load(path, test_fraction=0.25)
    assert "\n" not in info.value.message


def test_nan_like_and_empty_texts_are_texts_and_huge_fields_are_bounded(tmp_path, monkeypatch):
    rows = [("nan", "a"), ("", "b"), ("null None NaN", "a"), ("x " * 100_000, "b")] * 5
    data = _load(_write(tmp_path / "r.csv", rows), sequence_length=8, test_fraction=0.25)
    assert "nan" in data.vocabulary and data.x_train.shape[1] == 8
    info = data.info["tokenizer"]
    assert sum(info["empty_texts"].values()) == 5 and sum(info["truncated"].values()) == 5
    monkeypatch.setattr(text, "MAX_FIELD", 1000)  # a field with no closing quote swallows the file
    (tmp_path / "q.csv").write_text('text,label\n"open quote,a\n' + "more text\n" * 200)
    with pytest.raises(DataError, match=r"q.csv:2: cannot read as CSV \(field larger than field limit"):
        _load(tmp_path / "q.csv")


def test_recipe_refuses_normalize_and_text_settings_elsewhere(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="would scale token ids"):
        DataSpec(source="text", path=tmp_path / "r.csv", normalize="standard")
    with pytest.raises(ValidationError, match="text_column applies to source text only"):
        DataSpec(source="csv", path=tmp_path / "r.csv", text_column="text")


def test_stage_cache_keeps_the_vocabulary(tmp_path):
    from edgekit.data import stage

    data = _load(_write(tmp_path / "r.csv", _reviews(40)), sequence_length=10)
    stage._store(data, tmp_path)
    back = stage._load(tmp_path)
    assert back.vocabulary == data.vocabulary and back.info["tokenizer"] == data.info["tokenizer"]
    np.testing.assert_array_equal(back.x_test, data.x_test)
    run = tmp_path / "run"
    run.mkdir()
    text.write_vocabulary(run, back)
    assert (run / "vocab.txt").read_text(encoding="utf-8").splitlines() == data.vocabulary
    settings = json.loads((run / "tokenizer.json").read_text())
    assert settings["sequence_length"] == 10 and settings["vocab_size"] == len(data.vocabulary)
    text.write_vocabulary(run, load_dataset(DataSpec(source="digits"), seed=0, calibration_samples=8))
    assert not (run / "vocab.txt").exists() and not (run / "tokenizer.json").exists()  # not a text run


def test_text_models_take_int32_ids_sized_by_the_data():
    from edgekit import models
    from edgekit.recipe.schema import ModelSpec

    for arch in ("text_pool", "text_gru"):
        model = models.build(ModelSpec(arch=arch, params={"embedding_dim": 4}), (6,), 3, vocab_size=50)
        assert model.inputs[0].dtype == "int32" and model.get_layer("embedding").input_dim == 50
        assert model.output_shape == (None, 3)
    with pytest.raises(ModelError, match=r"vocab_size: 20 is smaller than the data's vocabulary \(50 ids\)"):
        models.build(ModelSpec(arch="text_pool", params={"vocab_size": 20}), (6,), 3, vocab_size=50)
    with pytest.raises(ModelError, match="set model.params.vocab_size to the largest token id"):
        models.build(ModelSpec(arch="text_pool"), (6,), 3)
    with pytest.raises(ModelError, match=r"needs token id sequences of shape \(sequence_length,\)"):
        models.build(ModelSpec(arch="text_gru"), (6, 2), 3, vocab_size=50)


def test_a_text_model_trains_on_imdb_from_the_keras_cache(tmp_path, monkeypatch):
    import tf_keras as keras

    from edgekit import models
    from edgekit.recipe.schema import ModelSpec

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    reviews = np.empty(80, dtype=object)  # Keras' encoding: 1 = start, word ids from 4; class 1 uses ids 4-53
    reviews[:] = [[1, *rng.integers(4 + 50 * (1 - c), 54 + 50 * (1 - c), 30), 12000] for c in y]
    np.savez(tmp_path / "datasets" / "imdb.npz", x_train=reviews[:60], y_train=y[:60], x_test=reviews[60:], y_test=y[60:])
    data = load_dataset(DataSpec(source="imdb", val_fraction=0), seed=0, calibration_samples=8)
    assert data.info["vocab_size"] == 10000 and data.x_train.max() < 10000
    keras.utils.set_random_seed(0)
    model = models.build(ModelSpec(arch="text_pool", params={"embedding_dim": 4, "hidden": 0}), data.input_shape, 2,
                         vocab_size=data.info["vocab_size"])
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate(data.x_test, data.y_test, verbose=0)[1] >= 0.9


def test_build_writes_vocab_txt_and_int8_keeps_the_accuracy(tmp_path):
    _write(tmp_path / "reviews.csv", _reviews(300))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: text\nseed: 0\ndata: {source: text, path: reviews.csv, sequence_length: 12}\n"
        "model: {arch: text_pool, params: {embedding_dim: 8, hidden: 0}}\n"
        "train: {epochs: 12, learning_rate: 0.02}\nquantize: {precisions: [int8], calibration_samples: 50}\n"
        "export: {formats: [tflite]}\nbenchmark: {runs: 5, warmup: 1, inputs: 2, profile: false}\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    vocab = (tmp_path / "run" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:2] == ["[PAD]", "[UNK]"] and len(vocab) == doc["data"]["tokenizer"]["vocab_size"] == doc["data"]["vocab_size"]
    assert "vocabulary" not in json.dumps(doc["data"])  # the settings and size, not the tokens
    rows = {row["id"]: row for row in doc["rows"]}
    assert all(row["status"] == "ok" for row in rows.values()), [(r["id"], r["reason"]) for r in rows.values()]
    base = rows["keras-fp32@cpu"]["metrics"]["accuracy"]
    assert base > 0.95 and rows["tflite-int8@cpu"]["metrics"]["accuracy"] >= base - 0.02
    (tmp_path / "run" / "vocab.txt").unlink()
    again = runner.invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])  # data from the stage cache
    assert again.exit_code == 0 and "(cached)" in again.output, again.output
    assert (tmp_path / "run" / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
