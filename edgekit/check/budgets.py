"""The recipe's ``check:`` section: regression budgets that ``edgekit check`` enforces.

Budgets apply per row. ``defaults`` holds one budget for every row; each entry of ``rules``
picks rows by a glob on the row id (``"*-int8@*"``, ``"tflite-*@cpu"``) and overrides only
the keys it names, later rules winning. A key set to ``null`` turns that budget off.

This module imports only pydantic and the standard library: loading a recipe must stay cheap.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

# One description per budget, shared by ``defaults`` and ``rules`` (and shown by `edgekit schema`).
DOCS = {
    "max_metric_drop": "largest allowed drop of the task metric against this run's own baseline row "
                       "(absolute, in metric units: 0.01 = one accuracy point). Task fidelity: the baseline row is "
                       "the reference itself (snr_db at the 120 dB cap), so the drop reads 120 - SNR and the "
                       "default 0.01 is not applied there: set min_metric (e.g. 30 dB) or an explicit drop",
    "min_metric": "smallest allowed value of the primary metric on the row, in its own units (absolute: 30 = "
                  "30 dB SNR for task fidelity, 0.9 = 90% accuracy); for a higher-is-better metric",
    "max_metric": "largest allowed value of the primary metric on the row, in its own units (absolute: 0.5 = "
                  "an MAE of 0.5 in the units of y); for a lower-is-better metric",
    "max_metric_drop_vs_stored": "largest allowed drop of the task metric against the same row in the "
                                 "stored baseline (absolute, in metric units)",
    "max_latency_ratio_regression": "largest allowed growth of the in-run latency ratio (row p50 / reference-row "
                                    "p50, see latency_reference) against the same ratio in the stored baseline: "
                                    "1.10 = 10% worse. Both p50s come from one run on one machine, so a slower CI "
                                    "machine does not fail; it fails only when the growth is past the limit and "
                                    "significant (its 95% interval, from the rounds, lies above 1)",
    "latency_reference": "the reference row of max_latency_ratio_regression: fp32 (the same model's fp32 row in the "
                         "same runtime and target, for a compressed model's fp32 row the base model's; the base "
                         "model's fp32 rows are then not judged) or baseline (the run's baseline row, usually the "
                         "Keras model, whose CPU latency moves between runs more than any other row's)",
    "max_latency_ms_abs": "largest allowed p50 latency in ms. Absolute: meaningful only on a pinned device",
    "max_latency_abs_regression": "largest allowed row p50 now / row p50 in the stored baseline: 1.10 = 10% "
                                  "slower. Absolute: meaningful only when CI runs on the baseline's pinned device",
    "max_latency_regression_vs_history": "largest allowed row p50 now / the mean p50 (geometric) of the same row "
                                         "and target over the last runs in the history (`edgekit check --history URL "
                                         "--window N`, same machine or device only): 1.10 = 10% slower. It fails only "
                                         "when past the limit and significant: the 95% interval of the growth, from "
                                         "the spread of the window's runs and the row's own rounds, lies above 1",
    "max_size_bytes": "largest allowed artifact size in bytes",
    "metric": "the metric min_metric, max_metric and the metric drops judge: any metric the rows record "
              "(results.json rows[].metrics), e.g. top1_agreement for a label-free classifier (task fidelity); "
              "default: the task's primary metric",
    "device_limits": "judge the memory limits a row carries from its target (an mcu profile: tensor arena + "
                     "arena_margin against ram_kb, the model against flash_kb; an ethos-u profile: Vela's SRAM use "
                     "against sram_kb, the compiled model against flash_kb): true fails a row past them; "
                     "false or null reports nothing",
    "outputs": "budgets on single outputs of a model of several, besides the row's headline (the worst output's): "
               "{output name: {min_metric, max_metric, max_metric_drop, max_metric_drop_vs_stored}}, each judged on "
               "that output's own primary metric (results rows' outputs.<name>: accuracy of a labelled class head, "
               "mae of a regression head, snr_db of an output without labels); a rule's entry replaces that output's",
}
BUDGET_KEYS = tuple(DOCS)
LOSS_TOLERANCE_DOC = (
    "per metric, how much worse than the baseline row a row may be before the build flags it with a `loss` note "
    "(a note, never a failure: budgets decide the exit code). Defaults: scores in [0, 1] (accuracy, roc_auc, "
    "mean_iou, top1_agreement) 0.01 = one point lower; error metrics (mae, rmse, mse) 0.05 = 5% higher; snr_db 20 = "
    "a floor of 20 dB. null turns a metric's flag off, e.g. {accuracy: 0.02, mae: null}")


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt budget must never silently pass.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN limit would pass everything


class OutputBudget(_Strict):
    """The metric budgets of one output, on its own primary metric (see ``outputs``)."""

    min_metric: float | None = Field(None, description=DOCS["min_metric"])
    max_metric: float | None = Field(None, description=DOCS["max_metric"])
    max_metric_drop: float | None = Field(None, ge=0, description=DOCS["max_metric_drop"])
    max_metric_drop_vs_stored: float | None = Field(None, ge=0, description=DOCS["max_metric_drop_vs_stored"])


class Budget(_Strict):
    """The budget every row gets unless a rule overrides it; these values are the defaults."""

    max_metric_drop: float | None = Field(0.01, ge=0, description=DOCS["max_metric_drop"])
    min_metric: float | None = Field(None, description=DOCS["min_metric"])
    max_metric: float | None = Field(None, description=DOCS["max_metric"])
    max_metric_drop_vs_stored: float | None = Field(0.01, ge=0, description=DOCS["max_metric_drop_vs_stored"])
    max_latency_ratio_regression: float | None = Field(1.25, ge=1, description=DOCS["max_latency_ratio_regression"])
    latency_reference: Literal["fp32", "baseline"] = Field("fp32", description=DOCS["latency_reference"])
    max_latency_ms_abs: float | None = Field(None, gt=0, description=DOCS["max_latency_ms_abs"])
    max_latency_abs_regression: float | None = Field(None, ge=1, description=DOCS["max_latency_abs_regression"])
    max_latency_regression_vs_history: float | None = Field(1.10, ge=1, description=DOCS["max_latency_regression_vs_history"])
    max_size_bytes: int | None = Field(None, gt=0, description=DOCS["max_size_bytes"])
    device_limits: bool | None = Field(True, description=DOCS["device_limits"])
    outputs: dict[str, OutputBudget] = Field(default_factory=dict, description=DOCS["outputs"])
    metric: str | None = Field(None, min_length=1, description=DOCS["metric"])
    #: the keys the recipe set (in defaults or a matching rule); the others hold their defaults
    _explicit: frozenset = PrivateAttr(default_factory=frozenset)

    def is_explicit(self, key: str) -> bool:
        """Whether the recipe set ``key`` for this row (its defaults or a rule), not the schema's default."""
        return key in self._explicit


class Rule(_Strict):
    """Budgets for the rows whose id matches ``rows``; unnamed keys keep their default."""

    rows: str = Field(min_length=1, description='glob on row ids, e.g. "*-int8@*" or "tflite-*@cpu"')
    max_metric_drop: float | None = Field(None, ge=0, description=DOCS["max_metric_drop"])
    min_metric: float | None = Field(None, description=DOCS["min_metric"])
    max_metric: float | None = Field(None, description=DOCS["max_metric"])
    max_metric_drop_vs_stored: float | None = Field(None, ge=0, description=DOCS["max_metric_drop_vs_stored"])
    max_latency_ratio_regression: float | None = Field(None, ge=1, description=DOCS["max_latency_ratio_regression"])
    latency_reference: Literal["fp32", "baseline"] = Field("fp32", description=DOCS["latency_reference"])
    max_latency_ms_abs: float | None = Field(None, gt=0, description=DOCS["max_latency_ms_abs"])
    max_latency_abs_regression: float | None = Field(None, ge=1, description=DOCS["max_latency_abs_regression"])
    max_latency_regression_vs_history: float | None = Field(None, ge=1, description=DOCS["max_latency_regression_vs_history"])
    max_size_bytes: int | None = Field(None, gt=0, description=DOCS["max_size_bytes"])
    device_limits: bool | None = Field(None, description=DOCS["device_limits"])
    outputs: dict[str, OutputBudget] | None = Field(None, description=DOCS["outputs"])
    metric: str | None = Field(None, min_length=1, description=DOCS["metric"])


class CheckSpec(_Strict):
    """Regression budgets for `edgekit check`: defaults for all rows, then rules by row-id glob."""

    defaults: Budget = Field(default_factory=Budget, description="budgets for every row")
    rules: list[Rule] = Field(default_factory=list, description="overrides for rows matching a glob; later rules win")
    loss_tolerance: dict[str, Annotated[float, Field(ge=0)] | None] = Field(default_factory=dict, description=LOSS_TOLERANCE_DOC)

    def budget_for(self, row_id: str) -> Budget:
        """The effective budget of one row: the defaults, then every matching rule in order."""
        values = self.defaults.model_dump()
        explicit = set(self.defaults.model_fields_set)
        for rule in self.rules:
            if fnmatchcase(row_id, rule.rows):
                # Only keys the rule names override: an explicit null turns a default off; a rule's
                # outputs entry replaces that output's budgets, the other outputs keep theirs.
                values.update({key: getattr(rule, key) for key in rule.model_fields_set if key not in ("rows", "outputs")})
                if "outputs" in rule.model_fields_set:
                    values["outputs"] = {**(values.get("outputs") or {}),
                                         **{k: v.model_dump() for k, v in (rule.outputs or {}).items()}}
                explicit |= rule.model_fields_set - {"rows"}
        budget = Budget.model_validate(values)
        budget._explicit = frozenset(explicit)
        return budget

    def unmatched_rules(self, row_ids: list[str]) -> list[str]:
        """Patterns that match none of ``row_ids`` (usually a typo in the recipe)."""
        return [rule.rows for rule in self.rules if not any(fnmatchcase(r, rule.rows) for r in row_ids)]
