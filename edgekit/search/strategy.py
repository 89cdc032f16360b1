"""How a search walks its space: every point (grid), or Optuna's TPE sampler with constraints.

A strategy hands out trials in batches (``ask``: as many as run at once) and learns each outcome
(``tell``). The grid needs no library and is the right tool for a small space. TPE (Optuna's
Tree-structured Parzen Estimator, ``pip install 'keras-edgekit[search]'``) models which settings gave
low objectives and samples there; each trial's constraints (``Trial.set_constraint``: how far past
each budget it was; a trial stopped early or rejected before timing is infeasible by how far its
metric was past) keep it away from settings that broke them. Batches use Optuna's constant liar,
so trials in flight at once differ. When the sampler proposes only settings it has tried, an
untried trial of the grid is taken at random (seeded), so a search runs ``max_trials`` trials
whenever the space has that many.
"""

from __future__ import annotations

import random
from typing import Any

from edgekit.errors import InputError
from edgekit.search import space as space_module
from edgekit.search.space import Trial

#: asks per trial before a sampler that keeps proposing points already tried, or points that
#: build nothing, is stopped
_PATIENCE = 20


def make(spec, recipe) -> tuple[Any, list[Trial], int]:
    """The strategy of ``spec`` (``auto``: grid when the space has at most ``max_trials``
    distinct trials), the grid's trials and how many points of the grid build nothing."""
    grid, invalid = space_module.trials(spec.space, recipe)
    if not grid:
        raise InputError(f"search.space: none of its {invalid} point(s) builds a variant (every format/precision "
                         "pair is impossible, or QAT asks for a precision other than int8); widen the space")
    name = spec.strategy
    if name == "auto":
        name = "grid" if len(grid) <= spec.max_trials else "tpe"
    if name == "grid":
        return Grid(grid), grid, invalid
    return TPE(spec, recipe, len(grid)), grid, invalid


class Grid:
    """Every trial, in the grid's order."""

    name = "grid"

    def __init__(self, trials: list[Trial]):
        self.pending = list(trials)

    def ask(self, count: int) -> list[Trial]:
        batch, self.pending = self.pending[:count], self.pending[count:]
        return batch

    def tell(self, trial: Trial, outcome: dict) -> None:
        """The grid tries everything anyway."""


class TPE:
    """Optuna's TPE sampler over the space's dimensions (each a categorical choice)."""

    name = "tpe"

    def __init__(self, spec, recipe, distinct: int):
        try:
            import optuna
        except ImportError:
            raise InputError("search.strategy tpe needs Optuna, which is not installed: pip install 'keras-edgekit[search]' "
                             "(or set search.strategy: grid)") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.recipe, self.spec = optuna, recipe, spec
        self.dims = space_module.dimensions(spec.space, recipe)
        self.limit = min(spec.max_trials, distinct)
        seed = spec.seed if spec.seed is not None else recipe.seed
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, self.limit // 3)),
                                             constant_liar=True)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.grid = space_module.trials(spec.space, recipe)[0]
        self.random = random.Random(seed)
        self.started: set[str] = set()
        self.told: dict[str, tuple] = {}  # trial id -> (value, constraints), for repeats
        self.waiting: dict[str, list] = {}  # trial id -> Optuna trials asked for it, not told yet

    def ask(self, count: int) -> list[Trial]:
        batch: list[Trial] = []
        stale = 0
        while len(batch) < count and len(self.started) < self.limit:
            if stale >= _PATIENCE:  # the sampler keeps to what it tried: an untried trial, at random
                self.study.enqueue_trial(self._params(self.random.choice(
                    [t for t in self.grid if t.id not in self.started])))
                stale = 0
            asked = self.study.ask()
            point = {name: values[int(asked.suggest_categorical(name, [str(i) for i in range(len(values))]))]
                     for name, values in self.dims.items()}
            trial = space_module.canonical(point, self.recipe)
            if isinstance(trial, str):  # builds nothing: worst for the sampler, costs no trial
                self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
                stale += 1
                continue
            if trial.id in self.told:  # tried already: the sampler learns the same answer again
                self._tell_one(asked, *self.told[trial.id])
                stale += 1
                continue
            self.waiting.setdefault(trial.id, []).append(asked)
            if trial.id in self.started:
                stale += 1
                continue
            self.started.add(trial.id)
            batch.append(trial)
            stale = 0
        return batch

    def _params(self, trial: Trial) -> dict[str, str]:
        """The sampler's parameters (value indexes) of one point that builds ``trial``."""
        for point in space_module.grid(self.spec.space, self.recipe):
            found = space_module.canonical(point, self.recipe)
            if not isinstance(found, str) and found.id == trial.id:
                return {name: str(next(i for i, v in enumerate(values) if v == point[name]))
                        for name, values in self.dims.items()}
        raise ValueError(f"trial {trial.id} is not in the space")

    def tell(self, trial: Trial, outcome: dict) -> None:
        """``outcome``: {"value": objective or None, "constraints": [violation per constraint, <= 0 met]}."""
        told = (outcome.get("value"), tuple(outcome.get("constraints") or ()))
        self.told[trial.id] = told
        for asked in self.waiting.pop(trial.id, []):
            self._tell_one(asked, *told)

    def _tell_one(self, asked, value, constraints) -> None:
        if value is None and not constraints:  # failed: nothing to learn but "not here"
            self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
            return
        for i, violation in enumerate(constraints or (0.0,)):
            asked.set_constraint(f"c{i}", float(violation))
        self.study.tell(asked, float("inf") if value is None else float(value))
