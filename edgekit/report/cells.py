"""The cells of the results table, shared by the terminal, markdown and HTML views."""

from __future__ import annotations

from edgekit.targets import builtin_names

COLUMNS = ("id", "format", "precision", "size", "gzip", "sparsity", "metric", "delta", "p50", "speedup", "mem",
           "status / notes")
NUMERIC = ("size", "gzip", "sparsity", "metric", "delta", "p50", "speedup", "mem")


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def human_ms(ms: float) -> str:
    """A latency with a unit that keeps three significant digits (us below 1 ms)."""
    return f"{ms * 1000:.3g} us" if ms < 1 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


#: the snr_db of a row that agrees with the reference to float32 rounding, and of the reference
#: itself (``edgekit.evaluate.scores.SNR_CAP``; repeated here so the report imports no numpy)
SNR_CAP = 120.0


def metric_cell(metric: str, value: float | None, reference: bool = False) -> str:
    """One metric value as the tables show it: four decimals, or dB for snr_db, where the
    reference row (task fidelity's Keras fp32 row, scored against itself) reads "ref" and a
    row at the cap "≥120 dB" (as close as float32 rounding can tell)."""
    if value is None:
        return "-"
    if metric == "snr_db":
        return "ref" if reference else f"≥{SNR_CAP:.0f} dB" if value >= SNR_CAP else f"{value:.1f} dB"
    return f"{value:.4f}"


def fidelity_cell(metric: str, row: dict, reference: bool) -> str:
    """The metric cell, with a label-free classifier's top-1 agreement with the reference beside
    its SNR ("31.2 dB · top-1 0.9750"): the SNR of class scores says little of the classes."""
    cell = metric_cell(metric, row["metrics"].get(metric), reference)
    agreement = row["metrics"].get("top1_agreement")
    if metric != "snr_db" or reference or not isinstance(agreement, (int, float)):
        return cell
    return f"{cell} · top-1 {agreement:.4f}"


def delta_cell(metric: str, delta: float | None, reference: bool = False) -> str:
    """A row's metric minus the baseline's (in dB for snr_db; none against a reference at its cap:
    ``scores.delta`` leaves it out)."""
    if delta is None or (reference and metric == "snr_db"):
        return "-"
    if abs(delta) < (0.05 if metric == "snr_db" else 5e-5):
        delta = 0.0  # float32 rounding (-1e-9) is no loss: "+0.0000", never "-0.0000"
    return f"{delta:+.1f} dB" if metric == "snr_db" else f"{delta:+.4f}"


def output_cells(results: dict) -> list[list[str]]:
    """A model of several outputs: the header and, per row, each output's primary metric as the
    results table shows it (dB for snr_db, "ref" for the reference, the top-1 agreement of a
    label-free classifier's output beside it; the output that gave the row's headline marked
    *); empty for a model of one output."""
    rows = [row for row in results["rows"] if row.get("outputs")]
    if not rows:
        return []
    first = rows[0]["outputs"]
    header = ["id", *(f"{name} ({rec['task']}: {rec['primary_metric']})" for name, rec in first.items())]
    lines = []
    for row in rows:
        line = [row["id"]]
        for name in first:
            rec = row["outputs"].get(name) or {}
            metric = rec.get("primary_metric")
            cell = fidelity_cell(metric, {"metrics": rec.get("metrics") or {}}, row["id"] == results.get("baseline"))
            line.append(cell + ("*" if rec.get("headline") and cell != "-" else ""))
        lines.append(line)
    return [header, *lines]


def cells(results: dict) -> list[list[str]]:
    """One list of display strings per row, in COLUMNS order."""
    metric = results["primary_metric"]
    out = []
    for row in results["rows"]:
        delta = row["delta"].get(metric)
        lat = row["latency_ms"]
        speedup = row["speedup_vs_baseline"]
        if row["status"] == "ok":
            status = "; ".join(row["notes"]) or "ok"
        else:
            status = f"{row['status']}: {row['reason']}"
        out.append([
            row["id"],
            row["format"],
            row["precision"],
            human_size(row["size_bytes"]),
            human_size(row.get("gzip_bytes")),
            _percent((row.get("weights") or {}).get("sparsity")),
            fidelity_cell(metric, row, reference=_is_reference(results, row)),
            delta_cell(metric, delta, reference=_is_reference(results, row)),
            human_ms(lat["p50"]) if lat else "-",
            speedup_cell(speedup, row.get("speedup_vs_baseline_ci95")),
            human_size((row.get("memory") or {}).get("peak_bytes")),
            status,
        ])
    return out


def _is_reference(results: dict, row: dict) -> bool:
    """Whether ``row`` is what every row is scored against (task fidelity's baseline row)."""
    return results.get("task") == "fidelity" and row["id"] == results.get("baseline")


def speedup_cell(speedup: float | None, interval: list[float] | None) -> str:
    """``1.42x [1.35-1.50]``: the speedup and its 95% interval (the speedup alone without one)."""
    if not speedup:
        return "-"
    return f"{speedup:.2f}x [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else f"{speedup:.2f}x"


def _percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def not_produced_line(results: dict) -> str | None:
    """One short line on the format/precision pairs that were not built, and why."""
    missing: dict[str, set[str]] = {}
    qat_models: list[str] = []
    for item in results.get("not_produced", []):
        if "QAT" in item["reason"]:
            qat_models += [item["model"]] if item["model"] not in qat_models else []
        else:
            missing.setdefault(item["format"], set()).add(item["precision"])
    parts = [f"{fmt} has no {'/'.join(sorted(p))} converter" for fmt, p in missing.items()]
    if qat_models:
        parts.append(f"QAT models ({', '.join(qat_models)}) are exported at int8 only")
    return f"not produced: {'; '.join(parts)}" if parts else None


def speedup_line(results: dict) -> str:
    """Which row the speedup column is relative to (the GPU baseline when it was timed)."""
    row = results.get("speedup_baseline") or results["baseline"]
    if row.startswith("keras-fp32@"):
        target = row.rsplit("@", 1)[-1]
        where = target.upper() if target in builtin_names() else target  # CPU, GPU, or the device's name
        return f"speedup = p50 of {row} ({where} fp32) / row p50"
    return f"speedup = p50 of {row} / row p50"


def target_cells(results: dict) -> list[list[str]]:
    """The header and one line per variant with its p50 on every target, side by side; empty
    when only one target was measured."""
    by_target = results.get("latency_by_target") or {}
    targets = list(dict.fromkeys(t for per in by_target.values() for t in per))
    if len(targets) < 2:
        return []
    # Devices say what they ran on (e.g. tflite_runtime 2.14.0); cpu and gpu run several runtimes.
    runtimes = {t: ", ".join(sorted({per[t]["runtime"] for per in by_target.values()
                                     if t in per and per[t]["status"] == "ok" and per[t]["runtime"]})) for t in targets}
    builtin = builtin_names()
    header = ["variant", *(f"{t} ({runtimes[t]})" if runtimes[t] and t not in builtin else t for t in targets)]
    lines = []
    for stem, per in by_target.items():
        line = [stem]
        for t in targets:
            cell = per.get(t)
            line.append("-" if cell is None else human_ms(cell["p50"]) if cell["p50"] is not None else cell["status"])
        lines.append(line)
    return [header, *lines]
