"""What the README and the docs tell users to run: install lines that name this project's own
distribution, and the Python API example, run as written."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the distribution name on the package index (``edgekit`` there is an unrelated project)
DISTRIBUTION = "keras-edgekit"


def _texts() -> dict[Path, str]:
    """The README, every doc, and edgekit's own source (its error messages and docstrings)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*")), *sorted((ROOT / "edgekit").rglob("*.py"))]
    return {path: path.read_text(encoding="utf-8") for path in files if path.is_file()}


def test_the_distribution_has_a_name_of_its_own():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"edgekit": "edgekit.cli:main"}  # the command keeps its name


def test_every_install_line_names_this_project():
    """``pip install edgekit...`` would install someone else's package: every install of this
    project names keras-edgekit, or installs the checkout (``pip install -e .``)."""
    wrong = []
    for path, text in _texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for found in re.finditer(r"pip3? install ([^\n`]*)", line):
                command = re.split(r"&&|;|\|", found.group(1))[0]  # the install, not what follows it
                words = [w.strip("'\"") for w in command.split()]
                if any(re.match(r"edgekit($|\[|[<>=~!])", w) for w in words):
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not wrong, "install lines naming the distribution edgekit:\n" + "\n".join(wrong)


def test_results_record_edgekits_version():
    from edgekit import __version__, environment

    assert environment.package_versions(["edgekit"]) == {"edgekit": __version__}


def test_the_ci_workflow_installs_this_checkout_keeps_the_cache_and_gates_unjudged_budgets():
    import yaml

    text = (ROOT / "docs" / "ci-github-actions.yml").read_text()
    job = yaml.safe_load(text)["jobs"]["check"]
    steps = {step.get("name"): step for step in job["steps"]}
    assert steps["Install edgekit"]["run"].strip() == "python -m pip install ."
    cache = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["path"] == "${{ env.EDGEKIT_CACHE_DIR }}" and "EDGEKIT_CACHE_DIR" in job["env"]
    check = steps["Check against the committed baseline"]["run"]
    assert "--baseline" in check and "--allow-unjudged" not in check
    # the latency gate is a row against its fp32 sibling, never "against the Keras row"
    assert "fp32 sibling" in text and "Keras baseline row" not in text


def test_check_help_describes_the_gate_it_runs():
    from click.testing import CliRunner

    from edgekit.cli import cli

    shown = " ".join(CliRunner().invoke(cli, ["check", "--help"]).output.split())
    assert "over its fp32 sibling's" in shown and "--allow-unjudged" in shown
    assert "baseline-row p50" not in shown


def _python_api_block() -> str:
    """The README's Python API example, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_python_api_example_runs(tiny_run, tmp_path, monkeypatch, capsys):
    """The block runs as written, on the tiny recipe instead of digits_cnn (the same calls, its
    stages from the tiny build's cache: seconds, not a training)."""
    code = _python_api_block()
    assert 'edgekit.build("recipes/digits_cnn.yaml"' in code and "baseline.json" not in code.replace("baselines/", "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tiny_run.dir.parent / "cache"))
    exec(compile(code.replace("recipes/digits_cnn.yaml", str(tiny_run.recipe)), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0].endswith("@cpu") and float(printed[-1]) > 0  # best's id, p50 and metric; the file's p50
    assert (tmp_path / "runs" / "digits" / "results.json").is_file()
