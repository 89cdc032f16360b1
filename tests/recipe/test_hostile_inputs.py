"""Recipes and data files that once ended in a traceback, a hang or an out-of-memory kill:
each is now one line and exit 2, before anything is trained. Run through the real CLI."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli

BASE = "name: t\nmodel:\n  arch: mlp\n"


def _one_line_error(result, *fragments: str) -> str:
    """The run failed with exit 2 and exactly one line that contains every fragment."""
    assert result.exit_code == 2, result.output
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("text, fragments", [
    (BASE + "seed: 4294967296\n", ["seed", "less than or equal to 4294967295"]),
    (BASE + "seed: -1\n", ["seed", "greater than or equal to 0"]),
    (BASE + "seed: " + "9" * 5000 + "\n", ["integer of 5000 digits"]),
    (BASE + "train: {epochs: 1000000000000000000000000000000}\n", ["integer of 31 digits"]),
    (BASE + "train: {epochs: 1000000000000}\n", ["train.epochs", "less than or equal to 10000"]),
    (BASE + "benchmark: {runs: 1000000000000, warmup: 5}\n", ["benchmark.runs"]),
    (BASE + "benchmark: {min_time_s: .inf}\n", ["benchmark.min_time_s", "finite"]),
    (BASE + "train: {learning_rate: .nan}\n", ["train.learning_rate", "finite"]),
    (BASE + "quantize: {calibration_samples: 100000000}\n", ["quantize.calibration_samples"]),
    ("name: t\nmodel: {arch: mlp, params: {hidden: [1000000000000]}}\n", ["params.hidden[0]", "at most 100,000"]),
    ("name: t\nmodel: {arch: mlp, params: {hidden: [.inf]}}\n", ["params.hidden[0]", "finite"]),
    (BASE + "seed: 1\nseed: 2\n", ["duplicate key 'seed'", "line 5"]),
    ("name: t\nmodel: {arch: mlp}\ncheck: " + "[" * 1000 + "]" * 1000 + "\n", ["nested too deeply"]),
    ("name: t\nmodel: {arch: mlp}\ncheck: " + "[" * 40 + "]" * 40 + "\n", ["nested more than 32 levels"]),
    (BASE + 'data:\n  source: npz\n  path: "a\\0b.npz"\n', ["data.path", "NUL byte"]),
    (BASE + "data:\n  source: npz\n  path: " + "a" * 300 + ".npz\n", ["data.path", "255"]),
    ('name: t\nmodel:\n  file: "x\\0.h5"\n', ["model.file", "NUL byte"]),
    (BASE + "model: {arch: cnn}\n", ["duplicate key 'model'"]),
    (BASE + "compress:\n" + "  - {prune: {sparsity: 0.5}}\n" * 300, ["compress: expected at most 256 items, received 300"]),
    ('name: "\\U7fffffff"\nmodel: {arch: mlp}\n', ["escape sequence names no character"]),  # found by the fuzz test
])
def test_recipe_problem_is_one_line(tmp_path, text, fragments):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    line = _one_line_error(CliRunner().invoke(cli, ["validate", str(path)]), *fragments)
    assert len(line) < 400


def _alias_bomb(levels: int) -> str:
    lines = ["name: t", "model: {arch: mlp}", "targets:", "  - &a [x,x,x,x,x,x,x,x,x]"]
    previous = "a"
    for name in "bcdefghij"[:levels]:
        lines.append(f"  - &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(9))  # 9^10 values once expanded, in under 400 bytes
    assert path.stat().st_size < 400
    started = time.perf_counter()
    _one_line_error(CliRunner().invoke(cli, ["validate", str(path)]), "aliases")
    assert time.perf_counter() - started < 10  # generous: it takes milliseconds; a hang takes forever


def test_many_identical_compress_entries_finish(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(BASE + "compress: [&e {prune: {}}" + ", *e" * 60_000 + "]\n")  # 240 KB, 120k values
    _one_line_error(CliRunner().invoke(cli, ["validate", str(path)]), "more than 100000 values")


def test_duplicate_compress_entries_are_named(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(BASE + "compress:\n" + "  - {prune: {sparsity: 0.5}}\n" * 3)
    _one_line_error(CliRunner().invoke(cli, ["validate", str(path)]), "same model (pruned50)")


def _npz_recipe(tmp_path, task="classification", arch="mlp", **arrays) -> str:
    np.savez(tmp_path / "data.npz", **arrays)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: t\ntask: {task}\ndata: {{source: npz, path: data.npz}}\nmodel: {{arch: {arch}}}\n")
    return str(path)


_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(120, 6)).astype(np.float32)
_Y = np.arange(120) % 3


@pytest.mark.parametrize("arrays, task, fragments", [
    (dict(x=np.where(_RNG.random(_X.shape) < 0.02, np.nan, _X), y=_Y), "classification", ["NaN or infinite values"]),
    (dict(x=_X.astype(np.float64) * 1e300, y=_Y), "classification", ["data.npz array x", "NaN or infinite", "float32", "720 infinite"]),
    (dict(x=_X, y=np.r_[_RNG.normal(size=119), np.inf]), "regression", ["NaN or infinite targets"]),
    (dict(x=_X, y=np.zeros(120, int)), "classification", ["at least two classes"]),
    (dict(x_train=_X, y_train=_Y, x_test=_X[:0], y_test=_Y[:0]), "classification", ["x_test: no samples"]),
    (dict(x_train=_X[:0], y_train=_Y[:0], x_test=_X, y_test=_Y), "classification", ["x_train: no samples"]),
    (dict(x_train=_X, y_train=_Y, x_test=_X[:, :4], y_test=_Y), "classification", ["x_test", "[4]", "[6]"]),
    (dict(x_train=_X, y_train=np.where(_Y == 1, 0, _Y), x_test=_X, y_test=_Y), "classification", ["class id(s) 1", "no training sample"]),
    (dict(x=np.float32(3), y=np.int64(1)), "classification", ["single value"]),
    (dict(x=_X[:1], y=_Y[:1]), "classification", ["1 sample"]),
    (dict(x=_X.astype(np.complex64), y=_Y), "classification", ["complex64", "real numbers"]),
    (dict(x=_X, y=np.r_[_Y[:-1], 10**9]), "classification", ["class ids go up to 1000000000"]),
])
def test_data_problem_is_one_line_before_training(tmp_path, arrays, task, fragments):
    path = _npz_recipe(tmp_path, task, **arrays)
    _one_line_error(CliRunner().invoke(cli, ["validate", path]), *fragments)


def test_good_npz_validates(tmp_path):
    path = _npz_recipe(tmp_path, x=_X, y=_Y)
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 0, result.output
    assert "train 86, val 10, test 24" in result.output and "3 classes" in result.output


@pytest.mark.slow
def test_build_stops_at_data_errors_before_training(tmp_path):
    """`edgekit build` reaches the same checks: exit 2, one line, no model trained."""
    path = _npz_recipe(tmp_path, x=np.where(_RNG.random(_X.shape) < 0.02, np.inf, _X), y=_Y)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "edgekit.cli", "build", path, "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "NaN or infinite values" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "model" / "model.keras").exists()


@pytest.mark.parametrize("out, fragment", [("{file}/run", "Not a directory")])
def test_unwritable_out_is_one_line(tmp_path, out, fragment):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    path = _npz_recipe(tmp_path, x=_X, y=_Y)
    result = CliRunner().invoke(cli, ["build", path, "--out", out.format(file=blocker)])
    _one_line_error(result, "--out", fragment)


def test_cache_under_a_file_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(blocker / "cache"))
    path = _npz_recipe(tmp_path, x=_X, y=_Y)
    _one_line_error(CliRunner().invoke(cli, ["build", path, "--out", str(tmp_path / "run")]), "stage cache", "--fresh")


def _limited(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("case", ["label", "alias"])
def test_memory_bounded(tmp_path, case):
    """Under a 2 GiB address-space limit the label-10^9 file and the alias bomb end in one line
    (before the fix the first allocated a class name per integer: 24 GB; the second hung)."""
    if case == "label":
        path = _npz_recipe(tmp_path, x=_X, y=np.r_[_Y[:-1], 10**9])
        expected = "class ids go up to"
    else:
        path = tmp_path / "bomb.yaml"
        path.write_text(_alias_bomb(9))
        expected = "aliases"
    code = textwrap.dedent(f"""
        import sys
        from edgekit.cli import main
        sys.argv = ["edgekit", "validate", {str(path)!r}]
        main()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=_limited(2 << 30))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr and "MemoryError" not in result.stderr


def test_unexpected_error_is_one_line(tmp_path):
    """The console script's last line of defence: an error edgekit did not foresee is one line, exit 1."""
    code = textwrap.dedent("""
        import sys
        import edgekit.cli as c
        @c.cli.command("boom")
        def boom():
            raise RuntimeError("something nobody expected")
        sys.argv = ["edgekit", "boom"]
        c.main()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: internal error: RuntimeError: something nobody expected; this is a bug in edgekit: rerun with "
        "EDGEKIT_DEBUG=1 for the traceback and report it"]


def test_string_and_bool_labels_in_npz(tmp_path):
    """String labels become class ids named by the strings (sorted, as for csv); bool labels are 0/1."""
    from edgekit.data import load_dataset
    from edgekit.recipe.schema import load_recipe

    names = np.array(["cat", "dog", "emu"])[_Y]
    recipe = load_recipe(_npz_recipe(tmp_path, x=_X, y=names))
    data = load_dataset(recipe.data, 0, 8)
    assert data.class_names == ["cat", "dog", "emu"]
    assert sorted(np.unique(data.y_test)) == [0, 1, 2]
    flags = load_dataset(load_recipe(_npz_recipe(tmp_path, x=_X, y=_Y == 1)).data, 0, 8)
    assert flags.class_names == ["0", "1"]
    result = CliRunner().invoke(cli, ["validate", _npz_recipe(tmp_path, "regression", x=_X, y=names)])
    _one_line_error(result, "dtype <U3", "expected real numbers")


def test_yaml_merge_keys_still_work(tmp_path):
    """`<<: *anchor` is standard YAML; the duplicate-key check must not refuse it (or its override)."""
    from edgekit.recipe.schema import load_recipe

    path = tmp_path / "merge.yaml"
    path.write_text(BASE + "compress:\n  - prune: &p {sparsity: 0.5, epochs: 1}\n  - prune: {<<: *p, sparsity: 0.8}\n")
    recipe = load_recipe(path)
    assert [(c.prune.sparsity, c.prune.epochs) for c in recipe.compress] == [(0.5, 1), (0.8, 1)]
    path.write_text(BASE + "compress:\n  - prune: &p {sparsity: 0.5}\n  - prune: {<<: *p, epochs: 1, epochs: 2}\n")
    _one_line_error(CliRunner().invoke(cli, ["validate", str(path)]), "duplicate key 'epochs'")


def test_bad_worker_count_is_one_line(monkeypatch):
    from edgekit.errors import InputError
    from edgekit.executors import schemes as executor

    monkeypatch.setenv("EDGEKIT_WORKERS", "\u00b2")
    with pytest.raises(InputError, match="EDGEKIT_WORKERS"):
        executor.make_executor()
