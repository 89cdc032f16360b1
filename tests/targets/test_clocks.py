"""Clocks and heat around the timed rounds (edgekit.targets.clocks), on a fake /sys tree written
by the test: a governor that is not performance, a clock that drops mid-run, a CPU that must
cool below a limit first (and one that never does). The device side of the same readings runs
over the real sshd in test_fleet.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgekit.formats import FORMATS
from edgekit.report import devices
from edgekit.report.rows import clock_notes
from edgekit.targets import clocks
from edgekit.targets.cpu import time_together
from tests.targets.sysfs import fake_sysfs, set_frequency, set_temperature


@pytest.fixture(scope="module")
def session(tiny_artifacts):
    return FORMATS["tflite"].load_runtime()(tiny_artifacts["tflite", "int8"], 1)


def spec(**fields):
    from edgekit.bench.files import BenchSpec

    return BenchSpec(warmup=1, runs=6, rounds=3, **fields)


def test_the_host_reads_every_core_and_zone_around_each_round(session, tmp_path, monkeypatch, digits):
    root = fake_sysfs(tmp_path / "sys", freq_khz=[1500000, 1500000], governor="ondemand", temps_mc=[52000, 48000])
    monkeypatch.setenv(clocks.ROOT_ENV, str(root))
    (m,) = time_together([session], spec(), list(digits[0][:4]))
    read = m.clocks
    assert m.status == "ok" and read["source"] == str(root)
    assert [(r["round"], r["phase"]) for r in read["readings"]] == [(r, p) for r in range(3) for p in ("before", "after")]
    cores = [str(c) for c in clocks.cores_used() if c < 2]
    assert read["readings"][0]["freq_mhz"] == {c: 1500.0 for c in cores}
    assert read["readings"][0]["temp_c"] == {"cpu-thermal": 52.0, "zone1": 48.0}
    assert read["governors"] == ["ondemand"] and read["temp_c"] == [52.0, 52.0] and read["freq_change"] == 0.0
    assert m.measured_at == pytest.approx(time.time(), abs=60)
    notes = clock_notes(read, 0.10, "cpu")
    assert len(notes) == 1 and notes[0].startswith("CPU governor ondemand on cpu, not performance")


def test_a_clock_that_drops_during_the_rounds_is_a_note(session, tmp_path, digits):
    root = fake_sysfs(tmp_path / "sys", freq_khz=[1800000], governor="performance")
    recorder = clocks.Recorder(str(root))
    recorder.cores = [0]

    def throttle_after_the_first_round(phase, r):
        recorder(phase, r)
        if (phase, r) == ("after", 0):
            set_frequency(root, 0, 600000)  # a hot Pi 4 drops to 600 MHz

    from edgekit.bench.stats import time_rounds

    time_rounds([session], list(digits[0][:4]), 1, 6, rounds=3, on_round=throttle_after_the_first_round)
    read = recorder.summary()
    assert read["freq_mhz"] == {"0": [600.0, 1800.0]} and read["freq_change"] == pytest.approx(2 / 3, abs=1e-3)
    (note,) = clock_notes(read, 0.10, "pi4")
    assert note.startswith("CPU frequency moved during the rounds on pi4: core 0 1800 -> 600 MHz (67%")
    assert devices.clock_cell(read) == "600-1800 (moved 67%)"
    assert clock_notes(read, 0.80, "pi4") == []  # within a stated 80%


def test_wait_below_c_waits_for_the_cpu_to_cool_and_records_the_wait(tmp_path):
    root = fake_sysfs(tmp_path / "sys", freq_khz=[1000000], temps_mc=[71000])
    cooler = threading.Timer(0.6, set_temperature, args=(root, 0, 55000))
    cooler.start()
    recorder = clocks.Recorder(str(root), wait_below_c=60, wait_timeout_s=10)
    recorder("before", 0)
    cooler.join()
    (wait,) = recorder.waits
    assert wait["reached"] is True and wait["start_c"] == 71.0 and wait["end_c"] == 55.0
    assert 0.5 <= wait["waited_s"] < 5
    assert recorder.readings[0]["temp_c"] == {"cpu-thermal": 55.0}  # read after the wait: the round starts cool
    assert devices.waits_cell(recorder.summary()).startswith("1 below 60 C, ")


def test_a_wait_that_times_out_starts_the_round_anyway_with_a_note(tmp_path):
    root = fake_sysfs(tmp_path / "sys", freq_khz=[1000000], temps_mc=[80000])
    recorder = clocks.Recorder(str(root), wait_below_c=60, wait_timeout_s=0.4)
    started = time.monotonic()
    recorder("before", 0)
    assert time.monotonic() - started < 3
    read = recorder.summary()
    assert read["waits"][0]["reached"] is False and read["waits"][0]["end_c"] == 80.0
    notes = clock_notes(read, 0.10, "pi4")
    assert any(n.startswith("1 round(s) on pi4 started above wait_below_c 60 C") for n in notes), notes
    assert devices.waits_cell(read).endswith("1 timed out")


def test_a_machine_that_exposes_nothing_reads_empty_and_never_waits(tmp_path):
    (tmp_path / "empty").mkdir()
    recorder = clocks.Recorder(str(tmp_path / "empty"), wait_below_c=40, wait_timeout_s=30)
    started = time.monotonic()
    recorder("before", 0)
    recorder("after", 0)
    read = recorder.summary()
    assert time.monotonic() - started < 1  # no zone: nothing to wait for
    assert read["freq_mhz"] is None and read["temp_c"] is None and read["governors"] is None
    assert read["waits"][0]["reached"] is None and clock_notes(read, 0.1, "vm") == []
    assert devices.clock_cell(read) == "not in /sys"


def test_the_recipe_takes_the_waits_and_rejects_nonsense(write_recipe):
    from edgekit.errors import RecipeError
    from edgekit.recipe.schema import load_recipe

    recipe = load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\nbenchmark: {wait_below_c: 55, wait_timeout_s: 120}\n"))
    assert recipe.benchmark.wait_below_c == 55 and recipe.benchmark.clock_change == 0.10
    with pytest.raises(RecipeError, match="wait_below_c"):
        load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\nbenchmark: {wait_below_c: .nan}\n"))
    assert np.isfinite(recipe.benchmark.wait_timeout_s)
