"""What `edgekit check` prints and writes: the text table, the summary line, JUnit XML and the
GitHub step summary."""

from __future__ import annotations

from pathlib import Path

from edgekit.check.gate import CheckReport, Outcome

_COLUMNS = ("row", "budget", "value", "limit", "result", "detail")


def _cells(o: Outcome) -> tuple[str, ...]:
    return (o.row, o.budget, o.value, o.limit, o.result.upper() if o.result == "fail" else o.result, o.detail)


def summary_line(report: CheckReport) -> str:
    failed, counted = report.failures, [o for o in report.outcomes if o.result not in ("skip", "unstable")]
    shaky = report.unstable
    unjudged = (f"; {len(shaky)} latency budget(s) not judged, their timing unstable "
                f"({', '.join(o.row for o in shaky[:3])}{', ...' if len(shaky) > 3 else ''})") if shaky else ""
    if shaky:
        unjudged += (", passed by --allow-unjudged" if report.allow_unjudged else
                     ": a check that judged nothing there does not pass; time them on a quieter machine "
                     "(edgekit build --retime) or pass --allow-unjudged")
    allowed = [o for o in report.outcomes if o.budget == "sanity floor" and o.result == "skip"]
    unjudged += "; its Keras baseline is suspect, passed by --allow-suspect" if allowed else ""
    if not failed and report.passed:
        return f"check passed: {len(counted)} budget(s) hold{unjudged}"
    if not failed:
        return f"check not passed: {len(counted)} budget(s) hold{unjudged}"
    worst = "; ".join(o.describe() for o in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {len(counted)} budget(s) failed: {worst}{more}{unjudged}"


def format_text(report: CheckReport) -> str:
    """The plain-text table for terminals and CI logs: one line per budget."""
    lines = [f"results: {report.results_path}", f"baseline: {report.baseline_path or '(none)'}",
             f"budgets: {report.budgets_from}"]
    lines += [f"warning: {w}" for w in report.warnings]
    table = [_COLUMNS, *(_cells(o) for o in report.outcomes)]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS) - 1)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in table]
    return "\n".join(line.rstrip() for line in lines)


def write_junit(report: CheckReport, path: Path) -> None:
    """JUnit XML: one testcase per budget (classname = row id), failures and skips marked; a
    latency budget that unstable timing left unjudged is an error (a skip with --allow-unjudged)."""
    import xml.etree.ElementTree as ET

    errors = [o for o in report.unstable if not report.allow_unjudged]
    suites = ET.Element("testsuites", name="edgekit check")
    suite = ET.SubElement(suites, "testsuite", name="edgekit check", tests=str(len(report.outcomes)),
                          failures=str(len(report.failures)), errors=str(len(errors)),
                          skipped=str(sum(o.result in ("skip", "unstable") for o in report.outcomes) - len(errors)))
    for o in report.outcomes:
        case = ET.SubElement(suite, "testcase", classname=o.row, name=o.budget)
        if o.result == "fail":
            ET.SubElement(case, "failure", message=o.describe()).text = o.detail
        elif o.result == "unstable" and not report.allow_unjudged:
            ET.SubElement(case, "error", message=f"{o.row} {o.budget}: not judged", type="unstable").text = o.detail
        elif o.result in ("skip", "unstable"):
            ET.SubElement(case, "skipped", message=o.detail or "not measured")
        elif o.detail:
            ET.SubElement(case, "system-out").text = f"{o.value} {o.holds_if} {o.limit}; {o.detail}" if o.compared else o.detail
    ET.SubElement(suite, "system-out").text = "\n".join(
        [f"budgets: {report.budgets_from}", *(f"warning: {w}" for w in report.warnings)])
    ET.indent(suites)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def step_summary(report: CheckReport) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: verdict, warnings, and the table of budgets."""
    mark = {"pass": "✅ pass", "fail": "❌ **FAIL**", "skip": "➖ skip", "unstable": "⚠️ unstable"}
    head = "✅ passed" if report.passed else "❌ failed" if report.failures else "⚠️ not judged"
    lines = [f"## edgekit check {head}", "", summary_line(report), "",
             f"results `{report.results_path}`, baseline `{report.baseline_path or '(none)'}`, "
             f"budgets: {report.budgets_from}", ""]
    lines += [f"> **warning:** {w}" for w in report.warnings] + ([""] if report.warnings else [])
    lines += ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for o in report.outcomes:
        cells = (f"`{o.row}`", o.budget, o.value, o.limit, mark[o.result], o.detail)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n\n"
