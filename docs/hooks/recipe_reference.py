"""MkDocs hook: the recipe reference (docs/recipe-reference.md), generated from the recipe schema
at every build, so it cannot drift from the code.

The schema is what ``edgekit schema`` prints (the JSON Schema editors validate recipes with),
taken from the real click command: this file names no module of edgekit but the CLI, so moving
the recipe's modules needs no change here. The page holds a ``<!-- recipe-reference -->`` marker;
every section of the schema becomes a table there (key, type, default, bounds, description).
"""

from __future__ import annotations

import json
import re

#: the page and the marker the reference replaces
PAGE = "recipe-reference.md"
MARKER = "<!-- recipe-reference -->"


def recipe_schema() -> dict:
    """The recipe's JSON Schema, as ``edgekit schema`` prints it."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    result = CliRunner().invoke(cli, ["schema"], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"edgekit schema exited {result.exit_code}: {result.output}")
    return json.loads(result.output)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (the hook's signature)
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} marker: the generated reference has nowhere to go")
    return markdown.replace(MARKER, render(recipe_schema()))


def render(schema: dict) -> str:
    """Markdown tables of a recipe schema: the top-level keys, then one section per object."""
    defs = schema.get("$defs", {})
    sections: list[tuple[str, str, dict]] = []  # (heading, path prefix, object schema), in order
    seen: set[str] = set()

    def collect(prefix: str, node: dict) -> None:
        for key, prop in node.get("properties", {}).items():
            for ref, suffix in _refs(prop):
                if ref in seen:
                    continue
                seen.add(ref)
                path = f"{prefix}{key}{suffix}"
                sections.append((path, f"{path}.", defs[ref]))
                collect(f"{path}.", defs[ref])

    collect("", schema)
    out = [_table("", schema, defs, sections)]
    for path, prefix, node in sections:
        about = node.get("description", "")
        out.append(f"## `{path}`\n\n{_text(about)}\n\n" if about else f"## `{path}`\n\n")
        out[-1] += _table(prefix, node, defs, sections)
    return "\n".join(out)


def _refs(prop: dict) -> list[tuple[str, str]]:
    """The object definitions a property holds, with the path suffix that reaches them
    (``[]`` for a list item, ``.<name>`` for a mapping's value)."""
    found = []
    if "$ref" in prop:
        found.append((prop["$ref"].rsplit("/", 1)[1], ""))
    for option in prop.get("anyOf", []) + prop.get("allOf", []):
        found += _refs(option)
    if isinstance(prop.get("items"), dict):
        found += [(ref, "[]" + suffix) for ref, suffix in _refs(prop["items"])]
    if isinstance(prop.get("additionalProperties"), dict):
        found += [(ref, ".<name>" + suffix) for ref, suffix in _refs(prop["additionalProperties"])]
    return found


def _table(prefix: str, node: dict, defs: dict, sections) -> str:
    required = set(node.get("required", []))
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in node.get("properties", {}).items():
        # a section's defaults are in its own table
        default = "required" if key in required else "" if "$ref" in prop else _default(prop)
        bounds = _bounds(prop)
        about = _text(prop.get("description", "")) + (f" ({bounds})" if bounds else "")
        rows.append(f"| `{prefix}{key}` | {_type(prop, defs, sections)} | {default} | {about} |")
    return "\n".join(rows) + "\n"


def _type(prop: dict, defs: dict, sections) -> str:
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[1]
        path = next((p for p, _, n in sections if n is defs[ref]), None)
        return f"[section `{path}`](#{_anchor(path)})" if path else ref
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "anyOf" in prop:
        return " or ".join(_type(option, defs, sections) for option in prop["anyOf"])
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(prop["allOf"][0], defs, sections)
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs, sections)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"{{name: {_type(prop['additionalProperties'], defs, sections)}}}"
    return {"null": "null", "integer": "integer", "number": "number", "string": "string",
            "boolean": "boolean", "object": "mapping"}.get(kind, kind)


def _default(prop: dict) -> str:
    if "default" not in prop:
        return ""
    value = json.dumps(prop["default"])
    return f"`{value}`" if len(value) <= 60 else f"`{value[:57]}...`"


def _bounds(prop: dict) -> str:
    words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<",
             "minLength": "length >=", "maxLength": "length <=", "minItems": "items >=", "maxItems": "items <="}
    found = [f"{words[k]} {prop[k]}" for k in words if k in prop]
    if "pattern" in prop:
        found.append(f"matches `{prop['pattern']}`")
    for option in prop.get("anyOf", []):
        if (inner := _bounds(option)) and inner not in found:
            found.append(inner)
    return ", ".join(found)


def _text(text: str) -> str:
    """A description as table-safe Markdown: code spans kept, ``|``, ``<`` and ``*`` escaped outside them."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(part if part.startswith("`") else
                   part.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
                   for part in parts)


def _anchor(path: str) -> str:
    """The id MkDocs' toc gives a heading ``## `path` ``."""
    return re.sub(r"[^\w\- ]", "", path.lower()).strip().replace(" ", "-")
