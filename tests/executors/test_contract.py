"""The executor contract, held against every executor edgekit has: the local pool, in-process
(EDGEKIT_WORKERS=0) and Dask (a dask://local cluster). What a build relies on: a task's value
comes back through its future, a task that raises fails its own future in one line, its
messages reach ``on_message`` in order, a held task's record (host, start, end) is kept, and
the scheme table makes each of them from its ``--executor`` value."""

from __future__ import annotations

import os

import pytest

from edgekit.errors import InputError, TaskFailed
from edgekit.executors import schemes
from edgekit.executors.base import Executor, report
from edgekit.executors.local import InProcess, LocalPool
from edgekit.locks import Hold


def _power(base: int, exponent: int) -> int:
    return base ** exponent


def _chatty(lines: list[str]) -> int:
    """Send each line back, then a stage and progress, as a conversion does."""
    for line in lines:
        report("log", line)
    report("stage", "convert")
    report("progress", "1/1")
    return os.getpid()


def _broken(text: str) -> None:
    raise ValueError(f"{text}\nsecond line of the reason")


@pytest.fixture(scope="module")
def local_pool():
    with LocalPool(1) as pool:
        yield pool


@pytest.fixture(params=["local", "in-process", "dask"])
def executor(request, local_pool) -> Executor:
    if request.param == "local":
        return local_pool
    if request.param == "in-process":
        return InProcess()
    return request.getfixturevalue("cluster")


def test_a_task_value_comes_back_through_its_future(executor):
    futures = [executor.submit(_power, n, 3) for n in (2, 3, -4)]
    assert [f.result(timeout=120) for f in futures] == [8, 27, -64]
    assert executor.slots() >= 1


def test_a_task_that_raises_fails_its_own_future_in_one_line_and_keeps_its_record(executor):
    hold = Hold("contract broken", "convert")
    failed = executor.submit(_broken, "no such layer", hold=hold)
    with pytest.raises(TaskFailed) as caught:
        failed.result(timeout=120)
    assert "no such layer" in str(caught.value) and "\n" not in str(caught.value)
    assert executor.submit(_power, 5, 2).result(timeout=120) == 25  # the executor goes on
    assert any(r["task"] == "contract broken" for r in executor.records)


def test_messages_reach_on_message_in_order_and_the_hold_record_is_kept(executor):
    heard: list[tuple[str, str]] = []
    hold = Hold("contract chatty", "convert")
    pid = executor.submit(_chatty, ["first", "second"], on_message=lambda kind, text: heard.append((kind, text)),
                          hold=hold).result(timeout=120)
    assert [text for kind, text in heard if kind == "log"] == ["first", "second"]
    assert ("stage", "convert") in heard and ("progress", "1/1") in heard
    record = next(r for r in executor.records if r["task"] == "contract chatty")
    assert record["host"] and record["start"] <= record["end"]
    # in-process runs here; a pool or a cluster runs tasks in processes of their own
    assert (pid == os.getpid()) == executor.in_process


def test_the_scheme_table_makes_each_executor_and_names_every_form(monkeypatch):
    monkeypatch.setenv("EDGEKIT_WORKERS", "0")
    assert isinstance(schemes.make_executor(spec="local"), InProcess)
    for name, scheme in schemes.SCHEMES.items():
        assert scheme.forms.split(" ")[0].startswith(name)
        assert scheme.forms in schemes.executor_forms()
    for wrong in ("ray://x", "local://x", "dask", ""):
        with pytest.raises(InputError) as caught:
            schemes.make_executor(spec=wrong or " ")
        if wrong:
            assert repr(wrong) in str(caught.value) and schemes.executor_forms() in str(caught.value)
