"""What the light commands may import (after click's tests/test_imports.py): one fresh
interpreter runs them all in turn and records the top-level modules each one imported first;
anything outside the allow-list fails the command that pulled it in. `edgekit --help`, `check`
and `validate` must stay fast on a CI runner without TensorFlow warmed up."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.cli import HEAVY_MODULES

#: third-party top-level modules a light command may import (the standard library always)
ALLOWED = {
    "edgekit", "click", "yaml", "numpy",
    "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
    "rich", "markdown_it", "mdurl", "pygments",
}
#: `validate` reads and splits the data: the data stack too, never a deep-learning framework
DATA_STACK = {"sklearn", "scipy", "pandas", "joblib", "threadpoolctl", "dateutil", "pytz", "tzdata", "six",
              "narwhals", "psutil", "cloudpickle", "charset_normalizer"}

#: command name -> its arguments ({run}, {baseline} and {recipe} are filled in); in this order,
#: validate last: it may import the data stack, which would hide the commands after it
COMMANDS = {
    "--help": ["--help"],
    "build --help": ["build", "--help"],
    "schema": ["schema"],
    "formats": ["formats"],
    "models": ["models"],
    "bench --help": ["bench", "--help"],
    "devices --help": ["devices", "--help"],
    "report --help": ["report", "--help"],
    "check --help": ["check", "--help"],
    "verify --help": ["verify", "--help"],
    "baseline save RUN PATH": ["baseline", "save", "{run}", "{baseline}"],
    # the tiny build's timing may be unstable on a busy machine: what is imported is the same
    "check RUN --baseline PATH": ["check", "{run}", "--baseline", "{baseline}", "--allow-unjudged"],
    "validate RECIPE": ["validate", "{recipe}"],
}

_SCRIPT = """
import json, sys
args = json.loads(sys.argv[1])
def top():
    return {m.split(".")[0] for m in sys.modules}
seen, imported = top(), {}
from click.testing import CliRunner  # counted with the first command, as `edgekit` would import it
for name, argv in args.items():
    from edgekit.cli import cli
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, (name, result.output)
    now = top()
    imported[name] = sorted(m for m in now - seen - set(sys.stdlib_module_names) - {"cython_runtime"} if not m.startswith("_"))
    seen = now
print(json.dumps(imported))
"""


@pytest.fixture(scope="module")
def imported(tiny_run, tmp_path_factory) -> dict[str, list[str]]:
    """Each command's newly imported top-level modules (Cython's bookkeeping modules and private
    extension names like ``_cython_3_3_1`` left out: a framework always comes with its public name)."""
    folder = tmp_path_factory.mktemp("imports")
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x=rng.normal(size=(120, 6)).astype(np.float32), y=np.arange(120) % 3)
    recipe = folder / "recipe.yaml"
    recipe.write_text("name: t\ntask: classification\ndata: {source: npz, path: data.npz}\nmodel: {arch: mlp}\n")
    fill = {"{run}": str(tiny_run.dir), "{baseline}": str(folder / "baseline.json"), "{recipe}": str(recipe)}
    args = {name: [fill.get(a, a) for a in argv] for name, argv in COMMANDS.items()}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_light_command_imports_only_the_allow_list(imported, command):
    allowed = ALLOWED | (DATA_STACK if command.startswith("validate") else set())
    extra = set(imported[command]) - allowed
    assert not extra, f"`edgekit {command}` imported {sorted(extra)} (heavy: {sorted(extra & set(HEAVY_MODULES))})"


def test_the_commands_ran_and_imported_edgekit(imported):
    # Guards the test itself: a script that ran nothing would pass every allow-list.
    assert "edgekit" in imported["--help"] and "click" in imported["--help"]
    assert "pydantic" in {m for modules in imported.values() for m in modules}
