"""The one timing loop: interleaved rounds of timed runs over one or several sessions.

It runs on this machine and, shipped with the device runner (edgekit.targets.job), on every
ssh device, so it needs the standard library and numpy only, and runs on Python 3.7+."""

from __future__ import annotations

import time


def time_session(session, samples, warmup, runs, min_time_s=0.0):
    """Time ``session.run`` at batch 1 in one block: ``time_rounds`` with one session and one round.

    Returns:
        Per-run latencies in milliseconds.
    """
    return time_rounds([session], samples, warmup, runs, min_time_s, rounds=1)[0][0]


def time_rounds(sessions, samples, warmup, runs, min_time_s=0.0, rounds=1, seed=0, per_session=False, on_round=None,
                on_block=None):
    """Time every session's ``run`` at batch 1 in ``rounds`` interleaved rounds: THE timing loop
    of edgekit, local and remote.

    Each round times every session once, in a block of ``runs / rounds`` runs (and at least
    ``min_time_s / rounds`` seconds), the sessions' order shuffled per round with
    ``seed``: a slow phase of a shared machine then hits every session alike instead of
    deciding one session's numbers, and per-round figures show how much the machine moved.
    Inputs are prepared (quantized, converted to the runtime's type) before any clock starts;
    each block starts with untimed runs (``warmup`` in the first round, a tenth of it, at least
    one, later: the other sessions ran in between and took the caches).

    Args:
        sessions: objects with ``prepare(x)`` and ``run(feed)`` (edgekit runtime sessions).
        samples: float32 samples, each of the model's input shape without the batch axis;
            every session cycles through the same ones (with ``per_session``: one list of
            samples per session, for models with different inputs).
        warmup: untimed runs before the first block of each session.
        runs: minimum number of timed runs per session, over all rounds.
        min_time_s: minimum wall time in timed runs per session, over all rounds.
        rounds: how many rounds (1: one block per session, the old protocol); at most ``runs``.
        seed: seeds the order of the sessions in each round.
        on_round: called as ``on_round("before", r)`` before round ``r`` starts and
            ``on_round("after", r)`` once it ends, outside every timed block: where the
            clocks and temperatures are read and a hot CPU is waited for
            (``edgekit.targets.clocks.Recorder``).
        on_block: called as ``on_block(done, total)`` after each block (outside any timed run):
            the blocks timed so far, of ``rounds x sessions``.

    Returns:
        ``[session][round] -> [latency ms, ...]``.
    """
    import random

    rounds = max(1, min(int(rounds), int(runs)))  # a round has at least one run
    # ``runs`` split as evenly as it goes: the first ``runs % rounds`` rounds get one more.
    per_round = [int(runs) // rounds + (r < int(runs) % rounds) for r in range(rounds)]
    min_ns = int(float(min_time_s) * 1e9 / rounds)
    from edgekit.runtimes import one_sample_batch  # shipped beside this file (not on the --probe path)

    sets = samples if per_session else [samples] * len(sessions)
    feeds = [[s.prepare(one_sample_batch(x)) for x in own] for s, own in zip(sessions, sets)]
    shuffle = random.Random(seed)
    order = list(range(len(sessions)))
    out = [[] for _ in sessions]
    for r in range(rounds):
        if r:
            shuffle.shuffle(order)
        if on_round is not None:
            on_round("before", r)
        for i, k in enumerate(order):
            out[k].append(_time_block(sessions[k], feeds[k], warmup if r == 0 else max(1, warmup // 10) if warmup else 0,
                                      per_round[r], min_ns))
            if on_block is not None:
                on_block(r * len(order) + i + 1, rounds * len(order))
        if on_round is not None:
            on_round("after", r)
    return out


def _time_block(session, feeds, warmup, runs, min_ns):
    """``warmup`` untimed runs, then timed runs until both ``runs`` and ``min_ns`` are reached."""
    for i in range(warmup):
        session.run(feeds[i % len(feeds)])
    run, clock = session.run, time.perf_counter_ns
    latencies_ns = []
    spent_ns = 0
    i = 0
    while len(latencies_ns) < runs or spent_ns < min_ns:
        feed = feeds[i % len(feeds)]
        start = clock()
        run(feed)
        elapsed = clock() - start
        latencies_ns.append(elapsed)
        spent_ns += elapsed
        i += 1
    return [ns / 1e6 for ns in latencies_ns]
