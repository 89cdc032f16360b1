"""The sshd fixture for every test here, and one real build whose table holds cpu, mcu and ethos-u
rows side by side (the mcu and ethos-u tests read it)."""

import json
from types import SimpleNamespace

import pytest

from tests.targets.sshd import ssh_server  # noqa: F401 - registers the fixture

MICRO_RECIPE = """
name: mcu
seed: 0
data: {source: digits}
model: {arch: mlp, params: {hidden: [32]}}
train: {epochs: 4, batch_size: 64, learning_rate: 0.01}
quantize: {precisions: [int8, int16x8], calibration_samples: 64}
export: {formats: [tflite]}
targets: [cpu, m4, tiny, npu, npu-tiny]
benchmark: {warmup: 2, runs: 10, inputs: 4, profile: false}
"""


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One real build of an int8 and an int16x8 MLP on digits for a roomy microcontroller profile
    (m4), one too small for it (tiny), an Ethos-U55 at 250 MHz (npu) and one too small (npu-tiny)."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    folder = tmp_path_factory.mktemp("mcu-build")
    devices = folder / "devices"
    devices.mkdir()
    (devices / "m4.yaml").write_text("kind: mcu\nram_kb: 256\nflash_kb: 1024\narena_margin: 0.25\n")
    (devices / "tiny.yaml").write_text("kind: mcu\nram_kb: 0.5\nflash_kb: 2\n")
    (devices / "npu.yaml").write_text("kind: ethos-u\naccelerator: ethos-u55-128\nclock_mhz: 250\nsram_kb: 256\n"
                                      "flash_kb: 1024\ncpu: Cortex-M55\n")
    (devices / "npu-tiny.yaml").write_text("kind: ethos-u\naccelerator: ethos-u55-64\nsram_kb: 0.0625\nflash_kb: 1\n")
    recipe = folder / "mcu.yaml"
    recipe.write_text(MICRO_RECIPE)
    run_dir = folder / "run"
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")}).invoke(cli, ["build", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return SimpleNamespace(dir=run_dir, results=json.loads((run_dir / "results.json").read_text()), output=result.output,
                           recipe=recipe)


def refused_profile(folder, text: str) -> str:
    """The one-line error of loading a profile ``folder/board.yaml`` holding ``text`` (it must fail)."""
    from edgekit.errors import DeviceProfileError
    from edgekit.targets.profiles import load_profile

    path = folder / "board.yaml"
    path.write_text(text)
    with pytest.raises(DeviceProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message and "board.yaml" in message
    return message


def profile_target(folder, name: str, text: str):
    """The target of a device profile ``folder/devices/<name>.yaml`` holding ``text``."""
    from edgekit.targets import resolve

    devices = folder / "devices"
    devices.mkdir(exist_ok=True)
    (devices / f"{name}.yaml").write_text(text)
    (target,) = resolve([name], [devices]).values()
    return target


@pytest.fixture(scope="session")
def unsupported_ops_int8(tmp_path_factory):
    """artifacts/tflite-int8.tflite of a small model with two ops neither TFLite Micro nor the
    Ethos-U has a kernel for (TOPK_V2, REDUCE_PROD) between Dense layers."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from edgekit.formats import FORMATS

    inputs = keras.Input((16,), batch_size=1)
    hidden = keras.layers.Dense(8)(inputs)
    hidden = keras.layers.Lambda(lambda t: tf.math.top_k(t, k=8)[0])(hidden)
    hidden = keras.layers.Lambda(lambda t: tf.reduce_prod(t, axis=1, keepdims=True) * t)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    path = tmp_path_factory.mktemp("unsupported-ops") / "artifacts" / "tflite-int8.tflite"
    path.parent.mkdir()
    FORMATS["tflite"].load_converter()(model, path, "int8", np.random.default_rng(0).random((32, 16), dtype=np.float32), {})
    return path
