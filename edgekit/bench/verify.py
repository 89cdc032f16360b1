"""`edgekit verify RUN_DIR`: time a run's artifacts now with edgekit's own session and with each
runtime's own benchmark tool, in alternating pairs, with the threads and inference precision the
run used, and judge their ratio with a 95% interval.

What is compared, like with like, in one time window: pair after pair (ABAB, ``--pairs``, at
least 3), edgekit's session (the device runner, ``edgekit/targets/runner.py``, in a fresh
process: the timing loop and session every build uses) times the artifact, then the tool does.
A machine that gets busier between a build and its verify (25 minutes after a build, 0 of 5 rows
agreed, 1.30-1.82x; right after ``--retime``, 3 of 5) then moves both sides alike. The build's
stored p50 is shown beside, not judged.
- edgekit: the median of the runner's timed calls, per pair;
- OpenVINO: ``benchmark_app``'s overall ``Median`` latency (console line; its JSON report rounds to
  0.01 ms, too coarse for microsecond models);
- LiteRT: ``litert-benchmark``'s ``median_ms`` (its own timing loop; it rounds to 0.01 ms, so when
  it is the Python console script the ai-edge-litert wheel installs, its ``run_benchmark`` is run
  with that rounding turned off, nothing else changed);
- onnxruntime: the pip wheel ships no benchmark tool (``onnxruntime_perf_test`` is a source-build
  binary; the wheel's ``onnxruntime_test`` script cannot set threads and reports one mean that
  includes the first call), so its rows are unchecked, as are Keras rows (no native tool) and rows
  of other targets (the tools run on this machine only).

The ratio is edgekit / native: the geometric mean of the pairs' ratios, with the 95% interval of
Student's t on their logs (as every other interval of edgekit). The band of tolerance ``t`` is
``1/(1+t)`` to ``1+t`` (symmetric on a log scale: 25% allows 0.80x-1.25x). A row is ``ok`` when
the ratio lies in the band, ``outside`` when its whole interval lies outside it, ``unsure`` when
the ratio lies outside but the interval reaches into the band (not significant: more pairs tell).
No runtime is imported here: both sides run in their own processes, one after the other (a
benchmark never overlaps another), as argument lists with a timeout each.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit import lifeline
from edgekit.errors import ToolFailed, shorten
from edgekit.results.read import load_results
from edgekit.targets import host_session_names

if TYPE_CHECKING:
    from collections.abc import Callable

VERIFY_FILE = "verify.json"
DEFAULT_TOLERANCE = 0.25
DEFAULT_TIMEOUT_S = 120.0
#: alternating pairs (edgekit's session, then the tool) timed per row
DEFAULT_PAIRS = 3
EDGEKIT_STATISTIC = ("p50 now: the median of edgekit's session's timed runs (its device runner, a fresh process per pair), "
                     "geometric mean over the pairs")

#: why the Keras baseline rows cannot be checked (each format's tool is in the format table:
#: ``Format.native_bench``, or why it has none: ``Format.no_native_bench``)
KERAS_NO_TOOL = "no native benchmark tool for Keras models"
#: how a row's inference precision is named to benchmark_app's -infer_precision
_OV_PRECISION = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16"}

_LITERT_SHIM = (
    "import sys\n"
    "import ai_edge_litert.tools.benchmark_litert_model as tool\n"
    "tool.round = lambda value, ndigits=None: value  # the tool rounds to 0.01 ms; keep full resolution\n"
    "sys.argv[0] = 'litert-benchmark'\n"
    "tool.main()\n"
)


@dataclass
class Native:
    """One figure from a native tool."""

    value_ms: float
    statistic: str
    command: list[str]
    extra: dict = field(default_factory=dict)


@dataclass
class RowCheck:
    """The outcome for one results row; verdict is ok, outside, unsure (outside the band, not
    significantly), failed or unchecked. ``edgekit_p50_ms`` and ``native_ms`` are measured now,
    in ``pairs`` (edgekit ms, native ms); ``stored_p50_ms`` is the build's, shown, not judged."""

    id: str
    format: str | None
    precision: str | None
    target: str | None
    verdict: str
    reason: str | None = None
    edgekit_p50_ms: float | None = None
    native_ms: float | None = None
    native_statistic: str | None = None
    ratio: float | None = None
    tool: str | None = None
    tool_path: str | None = None
    command: list[str] | None = None
    threads: int | None = None
    infer_precision: str | None = None
    runs: int | None = None
    tool_seconds: float | None = None
    native_extra: dict = field(default_factory=dict)
    stored_p50_ms: float | None = None
    pairs: list = field(default_factory=list)
    ratio_ci95: list | None = None
    session_command: list[str] | None = None


@dataclass
class VerifyReport:
    """Every row's check, the tolerance and the machine's load while it ran."""

    run_dir: str
    tolerance: float
    rows: list[RowCheck]
    load_average: list[float]

    @property
    def bounds(self) -> tuple[float, float]:
        return ratio_bounds(self.tolerance)

    def count(self, verdict: str) -> int:
        return sum(row.verdict == verdict for row in self.rows)

    @property
    def exit_code(self) -> int:
        """1 when a ratio is outside the tolerance or a tool failed on a checkable row, else 0."""
        return 1 if self.count("outside") or self.count("failed") else 0


def ratio_bounds(tolerance: float) -> tuple[float, float]:
    """The ratios (edgekit / native) that count as agreeing: 1/(1+t) to 1+t."""
    return 1.0 / (1.0 + tolerance), 1.0 + tolerance


def find_tool(name: str, search_path: str | None = None) -> str | None:
    """Path of an executable ``name``: on ``search_path`` (os.pathsep-separated) when given, else
    on PATH and then beside this Python (a venv's bin, which is often not on PATH)."""
    if search_path is None:
        search_path = os.pathsep.join(filter(None, [os.environ.get("PATH"), os.path.dirname(sys.executable)]))
    return shutil.which(name, path=search_path)


def run_tool(argv: list[str], timeout_s: float) -> str:
    """Run one tool as an argument list; its stdout and stderr together.

    Raises:
        ToolFailed: it timed out, could not start, or exited non-zero (with its last line).
    """
    name = Path(argv[0]).name if argv[0] != sys.executable else "python"
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout_s, check=False, preexec_fn=lifeline.preexec())
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{name} timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise ToolFailed(f"{name} could not start: {exc.strerror or exc}") from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        raise ToolFailed(f"{name} exited {done.returncode}: {_last_line(output)}")
    return output


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return shorten(lines[-1], 200) if lines else "no output"


_OV_LATENCY = re.compile(r"^\[ INFO \]\s+(Median|Average):\s+([0-9.]+)\s*(us|ms)\s*$", re.MULTILINE)


def parse_benchmark_app(output: str) -> tuple[float, str, dict]:
    """(latency in ms, statistic, other figures) from benchmark_app's console output: the first
    (overall) Median, or the Average when no median is printed.

    Raises:
        ToolFailed: no latency line in the output.
    """
    found: dict[str, float] = {}
    for name, value, unit in _OV_LATENCY.findall(output):
        found.setdefault(name.lower(), float(value) / (1000.0 if unit == "us" else 1.0))
    if any(value <= 0 for value in found.values()):
        raise ToolFailed(f"benchmark_app printed a latency of 0: {found}")
    if "median" in found:
        return found["median"], "median", {"average_ms": found.get("average")}
    if "average" in found:
        return found["average"], "avg (the tool printed no median)", {}
    raise ToolFailed(f"benchmark_app printed no Median or Average latency: {_last_line(output)}")


def openvino_native(tool: str, artifact: Path, threads: int, infer_precision: str, runs: int,
                    pinning: bool | None, timeout_s: float) -> Native:
    """benchmark_app on one IR: one stream, one sync request, no hint, the row's threads,
    inference precision and pinning."""
    argv = [tool, "-m", str(artifact), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-api", "sync",
            "-nthreads", str(threads), "-infer_precision", infer_precision, "-niter", str(runs)]
    if pinning is not None:
        argv += ["-pin", "YES" if pinning else "NO"]
    value, statistic, extra = parse_benchmark_app(run_tool(argv, timeout_s))
    return Native(value, statistic, argv, extra)


def openvino_options(row: dict) -> dict:
    """benchmark_app's settings read from an OpenVINO row: the inference precision its session
    asked for (settings), else the row's own when it names one."""
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    return {"infer_precision": _OV_PRECISION.get(str(settings.get("inference_precision") or "").lower(),
                                                 "bf16" if row.get("precision") == "bf16" else "f32")}


def openvino_row(tool: str, artifact: Path, row: dict, bench: dict, threads: int, runs: int, timeout_s: float,
                 infer_precision: str = "f32") -> Native:
    """``openvino_native`` with the row's inference precision and CPU pinning (OpenVINO's
    ``NativeBench.run`` in the format table)."""
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    pinning = settings.get("cpu_pinning")
    return openvino_native(tool, artifact, threads, infer_precision, runs, pinning if isinstance(pinning, bool) else None,
                           timeout_s)


def litert_row(tool: str, artifact: Path, row: dict, bench: dict, threads: int, runs: int, timeout_s: float) -> Native:
    """``litert_native`` with the run's warm-up (TFLite's ``NativeBench.run`` in the format table)."""
    return litert_native(tool, artifact, threads, runs, _setting("warmup", bench, default=10, minimum=0), timeout_s)


def _litert_python(tool: str) -> list[str] | None:
    """The interpreter of the ai-edge-litert console script (from its #! line), or None when the
    tool is something else (a binary): then it is run as it is, with its own rounding."""
    try:
        with open(tool, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    if not head.startswith("#!") or "benchmark_litert_model" not in head:
        return None
    interpreter = shlex.split(head.splitlines()[0][2:].strip())
    return interpreter or None


def litert_native(tool: str, artifact: Path, threads: int, runs: int, warmup: int, timeout_s: float) -> Native:
    """litert-benchmark on one .tflite file with the row's threads; its median."""
    with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as folder:
        report = Path(folder) / "litert.json"
        args = ["--model", str(artifact), "--num_threads", str(threads), "--num_runs", str(runs),
                "--warmup_runs", str(warmup), "--result_json", str(report)]
        python = _litert_python(tool)
        argv = [*python, "-c", _LITERT_SHIM, *args] if python else [tool, *args]
        output = run_tool(argv, timeout_s)
        try:
            latency = json.loads(report.read_text())["latency"]
            value = float(latency["median_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ToolFailed(f"litert-benchmark wrote no median_ms to --result_json: {_last_line(output)}") from None
    if value <= 0:
        raise ToolFailed(f"litert-benchmark median {value:g} ms is below its 0.01 ms resolution")
    statistic = "median" if python else "median (rounded to 0.01 ms by the tool)"
    return Native(value, statistic, argv, {"average_ms": latency.get("avg_ms")})


def _recipe_benchmark(run_dir: Path) -> dict:
    """benchmark: of the recipe copy RUN_DIR/recipe.yaml, or {} when it cannot be read."""
    try:
        import yaml

        doc = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    except Exception:  # noqa: BLE001 - a fallback only; results.json comes first
        return {}
    section = doc.get("benchmark") if isinstance(doc, dict) else None
    return section if isinstance(section, dict) else {}


def _setting(name: str, *sources: dict, default: int, minimum: int = 1) -> int:
    for source in sources:
        value = source.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
    return default


def session_job(fmt, artifact: Path, threads: int, runs: int, warmup: int, options: dict, folder: Path) -> list[str]:
    """Write into ``folder`` what edgekit's own session needs to time ``artifact`` in a fresh
    process (the device runner with the timing loop, the format's session module, a job on
    random inputs of the model's shape) and return its command line."""
    from edgekit.targets.job import RUNNER, RUNNER_NAME, runner_files, session_files

    job = {"format": fmt.name, "runtime": fmt.runtime, "modules": list(fmt.runtime_packages),
           "model": str(Path(artifact).resolve()), "threads": threads, "warmup": warmup, "runs": runs, "rounds": 1,
           "samples": 16, "options": options}
    files = {RUNNER_NAME: RUNNER, **runner_files(), **session_files(fmt.runtime), "job.json": json.dumps(job).encode()}
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
    return [sys.executable, str(folder / RUNNER_NAME), str(folder / "job.json")]


def edgekit_p50(argv: list[str], timeout_s: float) -> float:
    """edgekit's p50 of one run of its session (``session_job``), in ms.

    Raises:
        ToolFailed: the session failed, timed out, or printed no result.
    """
    from statistics import median

    from edgekit.targets.job import result_payload

    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False,
                              preexec_fn=lifeline.preexec())
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"edgekit's session timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise ToolFailed(f"edgekit's session could not start: {exc.strerror or exc}") from None
    payload = result_payload(done.stdout) or {}
    latencies = payload.get("latencies_ms") or []
    if payload.get("error") or not latencies:
        why = payload.get("error") or _last_line(done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace"))
        raise ToolFailed(f"edgekit's session failed: {why}")
    return float(median(latencies))


def ratio_verdict(pairs: list[tuple[float, float]], tolerance: float) -> tuple[float, list[float] | None, str]:
    """(ratio, its 95% interval, verdict) of edgekit / native over alternating pairs: the
    geometric mean of the pairs' ratios, Student's t on their logs (None with one pair); ok in
    the band, outside when the whole interval is out of it, unsure when only the ratio is."""
    import math

    from edgekit.bench.stats import t975

    logs = [math.log(a / b) for a, b in pairs]
    mean = sum(logs) / len(logs)
    ratio = math.exp(mean)
    interval = None
    if len(logs) >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
        half = t975(len(logs) - 1) * sd / math.sqrt(len(logs))
        interval = [math.exp(mean - half), math.exp(mean + half)]
    low, high = ratio_bounds(tolerance)
    if low <= ratio <= high:
        return ratio, interval, "ok"
    lo, hi = interval or [ratio, ratio]
    return ratio, interval, "outside" if hi < low or lo > high else "unsure"


def _unchecked(row: dict, reason: str, **figures) -> RowCheck:
    return RowCheck(row["id"], row.get("format"), row.get("precision"), row.get("target"), "unchecked", reason,
                    **figures)


def _timed_here(row: dict) -> bool:
    """The row was timed with edgekit's own session on this machine (``Target.uses_host_session``):
    what the runtimes' tools can time again beside it."""
    return row.get("target") in host_session_names()


def check_row(row: dict, run_dir: Path, bench: dict, tolerance: float, runs: int | None,
              timeout_s: float, search_path: str | None, pairs: int = DEFAULT_PAIRS) -> RowCheck:
    """Check one results row: time it with edgekit's session and its tool in ``pairs``
    alternating pairs, or say why it cannot be checked."""
    fmt, target, status = row.get("format"), row.get("target"), row.get("status")
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    latency = row.get("latency_ms") if isinstance(row.get("latency_ms"), dict) else {}
    p50 = latency.get("p50")
    figures = {"stored_p50_ms": p50}
    if status != "ok":
        return _unchecked(row, f"row status is {status}" + (f": {row.get('reason')}" if row.get("reason") else ""),
                          **figures)
    if not _timed_here(row):
        names = " or ".join(host_session_names())
        return _unchecked(row, f"target {target}: verify runs the tools on this machine only (target {names})",
                          **figures)
    from edgekit.formats import FORMATS

    table_row = FORMATS.get(fmt)
    native_bench = getattr(table_row, "native_bench", None)
    if fmt == "keras":
        return _unchecked(row, KERAS_NO_TOOL, **figures)
    if native_bench is None:
        why = getattr(table_row, "no_native_bench", "") or f"no native benchmark tool known for format {fmt}"
        return _unchecked(row, why, **figures)
    tool_name, install = native_bench.tool, native_bench.install
    threads = _setting("threads", settings, bench, default=1)
    n_runs = runs or _setting("runs", latency, bench, default=100)
    check = RowCheck(row["id"], fmt, row.get("precision"), target, "failed", tool=tool_name, threads=threads,
                     runs=n_runs, stored_p50_ms=p50)
    options = native_bench.load_options()(row)
    for name, value in options.items():  # e.g. OpenVINO's inference precision: shown even when the tool cannot run
        setattr(check, name, value)
    if not isinstance(row.get("path"), str) or not row["path"]:
        check.reason = "row names no artifact (path) in results.json"
        return check
    artifact = run_dir / row["path"]
    needed = table_row.files(artifact)  # an IR's .bin with its .xml
    missing = [path for path in needed if not path.is_file()]
    if missing:
        check.reason = f"artifact {missing[0]} not found in the run directory (was it moved or cleaned?)"
        return check
    tool = find_tool(tool_name, search_path)
    if tool is None:
        where = search_path if search_path is not None else "PATH or beside edgekit's Python"
        check.verdict, check.reason = "unchecked", f"{tool_name} not found in {where}; install it: {install}"
        return check
    check.tool_path = tool
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-verify-session-") as folder:
            check.session_command = session_job(table_row, artifact, threads, n_runs,
                                                _setting("warmup", bench, default=10, minimum=0),
                                                export_options(table_row, run_dir), Path(folder))
            for _ in range(max(1, pairs)):  # A then B, A then B: one window, both sides alike
                # edgekit's side gets the default limit at least: --timeout is for the tools
                mine = edgekit_p50(check.session_command, max(timeout_s, DEFAULT_TIMEOUT_S))
                native = native_bench.load_run()(tool, artifact, row, bench, threads, n_runs, timeout_s, **options)
                check.pairs.append([mine, native.value_ms])
    except ToolFailed as exc:
        check.reason = str(exc)
        return check
    finally:
        check.tool_seconds = round(time.perf_counter() - started, 3)
    check.command, check.native_statistic = native.command, native.statistic
    check.native_extra = native.extra
    check.ratio, check.ratio_ci95, check.verdict = ratio_verdict([tuple(p) for p in check.pairs], tolerance)
    check.edgekit_p50_ms = _geometric_mean([a for a, _ in check.pairs])
    check.native_ms = _geometric_mean([b for _, b in check.pairs])
    low, high = ratio_bounds(tolerance)
    shown = f"{check.ratio:.2f}x" + (f" [{check.ratio_ci95[0]:.2f}-{check.ratio_ci95[1]:.2f}]" if check.ratio_ci95 else "")
    if check.verdict == "outside":
        check.reason = (f"edgekit's p50 is {shown} the {tool_name} {native.statistic} over {len(check.pairs)} "
                        f"alternating pairs: outside {low:.2f}x-{high:.2f}x")
    elif check.verdict == "unsure":
        check.reason = (f"{shown} lies outside {low:.2f}x-{high:.2f}x but its interval reaches into it (not "
                        "significant): run verify with more --pairs")
    return check


def _geometric_mean(values: list[float]) -> float:
    import math

    return math.exp(sum(math.log(v) for v in values) / len(values))


def export_options(fmt, run_dir: Path) -> dict:
    """The session options the build opened ``fmt``'s artifacts with: the recipe copy's
    ``export.<format>`` section (its defaults where it is missing or unreadable)."""
    section = {}
    try:
        import yaml

        doc = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        found = ((doc or {}).get("export") or {}).get(fmt.name)
        section = found if isinstance(found, dict) else {}
    except Exception:  # noqa: BLE001 - a fallback: the format's defaults
        pass
    try:
        return fmt.options.model_validate(section).model_dump()
    except Exception:  # noqa: BLE001
        return fmt.options().model_dump()


def verify_run(run_dir: Path, tolerance: float = DEFAULT_TOLERANCE, runs: int | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S, search_path: str | None = None,
               progress: Callable[[str], None] | None = None, pairs: int = DEFAULT_PAIRS) -> VerifyReport:
    """Check every row of a run against its runtime's own tool, one row after the other: each
    timed now by edgekit's session and by the tool in ``pairs`` alternating pairs.

    Args:
        run_dir: the run directory (or its results.json).
        tolerance: allowed relative disagreement (0.25: 0.80x-1.25x).
        runs: timed runs per side and pair; default the row's own count (latency_ms.runs).
        timeout_s: longest one tool (or one run of edgekit's session) may run.
        search_path: where to look for the tools (os.pathsep-separated); default PATH, then
            the folder of this Python.
        progress: called with a line before each tool runs.

    Raises:
        InputError: no readable results.json (exit 2).
    """
    from edgekit.formats import FORMATS

    run_dir = Path(run_dir)
    results = load_results(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    # Threads and counts: the row's settings first, then the run's benchmark block, then the recipe copy.
    bench = {**_recipe_benchmark(run_dir), **(results.get("benchmark") or {})}
    checks = []
    from edgekit.locks import Hold, holding

    # The tools time on this machine's CPU: alone on it, as the build's own benchmarks are.
    with holding(Hold(task=f"verify {run_dir.name}", kind="bench", mode="exclusive"), progress):
        for row in results["rows"]:
            native_bench = getattr(FORMATS.get(row.get("format")), "native_bench", None)
            if progress and row.get("status") == "ok" and _timed_here(row) and native_bench is not None:
                progress(f"[verify] {row['id']}: edgekit's session and {native_bench.tool}, {pairs} alternating pairs")
            checks.append(check_row(row, run_dir, bench, tolerance, runs, timeout_s, search_path, pairs))
    return VerifyReport(str(run_dir), tolerance, checks, [round(x, 2) for x in os.getloadavg()])


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3g} us" if value < 1 else f"{value:.3g} ms"


def format_text(report: VerifyReport) -> str:
    """The table: one line per row, with the statistics compared named in the header."""
    low, high = report.bounds
    lines = [f"verify {report.run_dir} (load average {' '.join(f'{x:g}' for x in report.load_average)})",
             (f"edgekit: {EDGEKIT_STATISTIC}; native: the tool's median (benchmark_app 'Median', "
              "litert-benchmark median_ms, a Python loop over CompiledModel.run_by_name); ratio = edgekit / native; "
              f"tolerance {report.tolerance:.0%} ({low:.2f}x-{high:.2f}x)")]
    header = ("id", "tool", "threads", "precision", "runs", "pairs", "edgekit p50 now", "native now",
              "ratio [95%]", "stored p50 (not judged)", "verdict")
    table = []
    for row in report.rows:
        verdict = row.verdict + (f": {row.reason}" if row.reason and row.verdict != "ok" else "")
        if row.native_statistic and row.native_statistic != "median":
            verdict += f" [native statistic: {row.native_statistic}]"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x" + (
            f" [{row.ratio_ci95[0]:.2f}-{row.ratio_ci95[1]:.2f}]" if row.ratio_ci95 else "")
        table.append((row.id, row.tool or "-", str(row.threads or "-"), row.infer_precision or row.precision or "-",
                      str(row.runs or "-"), str(len(row.pairs) or "-"), _ms(row.edgekit_p50_ms), _ms(row.native_ms),
                      ratio, _ms(row.stored_p50_ms), verdict))
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header) - 1)]
    for line in [header, *table]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
    return "\n".join(lines)


def summary_line(report: VerifyReport, path: Path | None = None) -> str:
    checked = report.count("ok") + report.count("outside") + report.count("unsure")
    text = (f"verify: {checked} row(s) compared, {report.count('ok')} within {report.tolerance:.0%}, "
            f"{report.count('outside')} outside, {report.count('unsure')} unsure (outside, not significantly), "
            f"{report.count('failed')} failed, {report.count('unchecked')} unchecked")
    return text + (f"; {path}" if path else "")


def write_json(report: VerifyReport, path: Path) -> Path:
    """RUN_DIR/verify.json: the per-row figures, commands and verdicts."""
    low, high = report.bounds
    doc = {"run_dir": report.run_dir, "tolerance": report.tolerance, "ratio_bounds": [low, high],
           "ratio": "edgekit / native, both timed now in alternating pairs (pairs: [edgekit ms, native ms]); "
                    "geometric mean and Student's t 95% interval of the pairs' ratios; stored_p50_ms is the build's, "
                    "not judged", "edgekit_statistic": EDGEKIT_STATISTIC,
           "load_average": report.load_average, "exit_code": report.exit_code,
           "rows": [asdict(row) for row in report.rows]}
    path = Path(path)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
