"""What the README and the docs tell users to run: install lines that name this project's own
distribution, every example command, recipe and device profile checked against the real CLI and
loaders (test_doc_examples.py runs the commands and the Python API example as written)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: the distribution name on the package index (``edgekit`` there is an unrelated project)
DISTRIBUTION = "keras-edgekit"


def _texts() -> dict[Path, str]:
    """The README, every doc, and edgekit's own source (its error messages and docstrings)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*")), *sorted((ROOT / "edgekit").rglob("*.py"))]
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
    """The Python API page's example, as written (its only Python block; test_doc_examples.py runs it)."""
    blocks = [code for language, code, _ in _blocks((ROOT / "docs" / "python-api.md").read_text()) if language == "python"]
    assert len(blocks) == 1, "the API page's Python blocks: run each in test_doc_examples.py"
    return blocks[0]


# --------------------------------------------------------------------------- every example, checked
# The README and every page of the docs site: each `edgekit ...` command parses against the real
# click CLI (the command and each option exist and take their values; nothing runs), each recipe
# and device profile YAML block validates with the real loaders, each Python block compiles.


def _pages() -> dict[str, str]:
    """README.md and the site's Markdown pages, by path from the repository root."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in files}


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """The fenced code blocks of a Markdown text: (language, code, line of the opening fence)."""
    blocks, open_at, language, lines = [], None, "", []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"\s*```\s*([\w+-]*)", line)
        if fence and open_at is None:
            open_at, language, lines, indent = number, fence.group(1).lower(), [], len(line) - len(line.lstrip())
        elif fence and not fence.group(1):
            blocks.append((language, "\n".join(lines), open_at))
            open_at = None
        elif open_at is not None:
            lines.append(line[indent:] if not line[:indent].strip() else line.lstrip())
    assert open_at is None, f"a code block opened at line {open_at} is never closed"
    return blocks


def _shell_commands(code: str) -> list[str]:
    """The edgekit commands of a shell block: continuation lines joined, comments and prompts
    dropped, each part of a `&&` / `;` chain on its own."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)
        for part in re.split(r"&&|;|\|\|", line):
            part = re.sub(r"\s#.*$", "", part).strip()
            if part.startswith("edgekit ") or part == "edgekit":
                commands.append(part)
    return commands


SHELL = ("bash", "sh", "shell", "console", "")


def _examples() -> list[tuple[str, str]]:
    """Every edgekit command in a shell block of the README and the docs: (where, command)."""
    found = []
    for page, text in _pages().items():
        for language, code, line in _blocks(text):
            if language in SHELL:
                found += [(f"{page}:{line}", command) for command in _shell_commands(code)]
    return found


def _command_of(words: list[str]):
    """Walk the click groups: (the leaf command, its name path, the words left for it)."""
    import click

    from edgekit.cli import cli

    command, path = cli, ["edgekit"]
    while isinstance(command, click.Group):
        assert words and not words[0].startswith("-"), f"{' '.join(path)} needs a subcommand"
        sub = command.get_command(click.Context(command), words[0])
        assert sub is not None, f"{' '.join(path)} has no command {words[0]!r}"
        command, path, words = sub, [*path, words[0]], words[1:]
    return command, path, words


def _parse(command_line: str) -> None:
    """Parse ``command_line`` with the real CLI as the shell would hand it over, without running
    it: unknown commands and options, missing values, bad choices and numbers fail. A path that
    must exist is the one thing not asked of an example (its file is the reader's)."""
    import shlex

    import click

    command, path, words = _command_of(shlex.split(command_line)[1:])
    try:
        command.make_context(" ".join(path), words, resilient_parsing=False)
    except click.BadParameter as exc:
        if not (exc.param is not None and isinstance(exc.param.type, click.Path) and "does not exist" in exc.message):
            raise
    except click.exceptions.Exit:  # --help
        pass


def test_every_example_command_parses():
    examples = _examples()
    assert len(examples) >= 15, examples  # the set-up commands and the docs' examples
    wrong = []
    for where, command_line in examples:
        try:
            _parse(command_line)
        except Exception as exc:  # noqa: BLE001 - each failure is listed with its place
            wrong.append(f"{where}: {command_line}\n    {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    assert not wrong, "example commands the CLI refuses:\n" + "\n".join(wrong)


def _inline_commands() -> list[tuple[str, str]]:
    """`edgekit ...` in the prose (code spans), with placeholders: (where, text)."""
    found = []
    for page, text in _pages().items():
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(page, span) for span in re.findall(r"`(edgekit [^`\n]+)`", prose)]
    return found


def _named_command(words: list[str]):
    """The command a span names, as deep as its words go (``edgekit devices`` names the group)."""
    import click

    from edgekit.cli import cli

    command, path = cli, ["edgekit"]
    while isinstance(command, click.Group) and words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        sub = command.get_command(click.Context(command), words[0])
        assert sub is not None, f"{' '.join(path)} has no command {words[0]!r}"
        command, path, words = sub, [*path, words[0]], words[1:]
    return command, path


def test_every_command_and_option_the_prose_names_exists():
    """The command table and the prose write commands with placeholders (``RECIPE...``,
    ``[--out DIR]``, ``--format table|plain``): each names a real command, and each option it
    shows is one of that command's."""
    import click

    spans = _inline_commands()
    assert len(spans) >= 20, spans
    wrong = []
    for page, span in spans:
        words = [w for w in re.split(r"[\s\[\]]+", span.replace("\\|", "|")) if w and w != "/"]
        try:
            command, path = _named_command(words[1:])
        except AssertionError as exc:
            wrong.append(f"{page}: `{span}`: {exc}")
            continue
        known = {opt for param in command.params if isinstance(param, click.Option)
                 for opt in (*param.opts, *param.secondary_opts)} | {"-h", "--help"}
        for word in words:
            option = word.split("=", 1)[0].rstrip(".,:;)")
            if re.fullmatch(r"--?[a-zA-Z][\w-]*", option) and option not in known:
                wrong.append(f"{page}: `{span}`: {' '.join(path)} has no option {option}")
    assert not wrong, "commands and options the docs name that the CLI lacks:\n" + "\n".join(wrong)


#: file names in quoted messages (an error for a recipe with a typo, a lock held by another build)
ILLUSTRATIONS = {"recipes/x.yaml", "recipes/b.yaml"}


def test_the_files_examples_name_exist():
    """Recipes and device profiles named in the docs are in the repository."""
    named = set()
    for text in _pages().values():
        named |= set(re.findall(r"\b((?:recipes|devices)/[a-z0-9][\w.-]*\.yaml)\b", text))  # NAME.yaml: a placeholder
    assert {"recipes/digits_cnn.yaml", "devices/example-pi.yaml"} <= named
    missing = sorted(name for name in named - ILLUSTRATIONS if not (ROOT / name).is_file())
    assert not missing, f"the docs name files that are not in the repository: {missing}"


#: what a recipe fragment is completed with before it is validated (a fragment names one section)
BASE_RECIPE = {"name": "docs", "model": {"arch": "cnn"}}


def _yaml_examples() -> list[tuple[str, dict]]:
    import yaml

    found = []
    for page, text in _pages().items():
        for language, code, line in _blocks(text):
            # a block that includes a file (the CI workflow, tested above) is that file's
            if language in ("yaml", "yml") and not code.startswith("--8<--"):
                found.append((f"{page}:{line}", yaml.safe_load(code)))
    return found


def test_every_recipe_and_device_profile_block_validates(tmp_path):
    """Each YAML block is a device profile (it has ``kind:`` or ``host:``), a whole recipe (it has
    ``name:`` and ``model:``) or a recipe fragment (completed with a name and a zoo model): all go
    through the real loaders, next to a copy of the repository's devices/ folder."""
    import shutil

    import yaml

    from edgekit.errors import EdgekitError
    from edgekit.recipe.schema import load_recipe
    from edgekit.targets.profiles import load_profile

    shutil.copytree(ROOT / "devices", tmp_path / "devices")
    examples = _yaml_examples()
    kinds = {"profile": 0, "recipe": 0, "fragment": 0}
    wrong = []
    for i, (where, document) in enumerate(examples):
        assert isinstance(document, dict), f"{where}: a YAML block that is not a mapping"
        if "kind" in document or "host" in document or "hosts" in document:
            kind, path, load = "profile", tmp_path / "devices" / f"docs-{i}.yaml", load_profile
        else:
            kind = "recipe" if {"name", "model"} <= set(document) else "fragment"
            document = document if kind == "recipe" else {**BASE_RECIPE, **document}  # its sections replace the base's
            path, load = tmp_path / f"docs-{i}.yaml", load_recipe
        kinds[kind] += 1
        path.write_text(yaml.safe_dump(document))
        try:
            load(path)
        except EdgekitError as exc:
            wrong.append(f"{where} ({kind}): {exc.message}")
    assert not wrong, "YAML examples the loaders refuse:\n" + "\n".join(wrong)
    assert kinds["profile"] >= 3 and kinds["recipe"] >= 1 and kinds["fragment"] >= 3, kinds


def test_every_python_block_compiles():
    """The Python API page's blocks run (below); every Python block anywhere at least compiles,
    and so does the example in the API module's docstring, which the reference page shows."""
    import textwrap

    from edgekit import api

    blocks = [(f"{page}:{line}", code) for page, text in _pages().items()
              for language, code, line in _blocks(text) if language in ("python", "py")]
    example = [line for line in api.__doc__.splitlines() if line.startswith("    ") or not line.strip()]
    docstring = textwrap.dedent("\n".join(example))
    assert "edgekit.build(" in docstring
    blocks.append(("edgekit/api.py docstring", docstring))
    assert len(blocks) >= 3, blocks
    for where, code in blocks:
        compile(code, where, "exec")
