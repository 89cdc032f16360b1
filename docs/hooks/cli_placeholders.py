"""MkDocs hook: keep the placeholders of the commands' help (``<out>/summary.json``,
``trials/<id>.yaml``) visible on the generated CLI page (docs/cli.md).

mkdocs-click puts each command's help text into the page as Markdown, where ``<out>`` reads as
an HTML tag and the browser hides it. Here every tag on that page that is no HTML element is
written back as text.
"""

from __future__ import annotations

import re

PAGE = "cli.md"
#: the elements Markdown and mkdocs-click write; anything else in angle brackets is a placeholder
HTML = {"a", "p", "div", "span", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "em",
        "strong", "table", "thead", "tbody", "tr", "th", "td", "br", "hr", "img", "blockquote", "dl", "dt", "dd",
        "sup", "sub", "details", "summary", "kbd", "b", "i", "svg", "path", "button", "input", "label", "nav"}
TAG = re.compile(r"</?([A-Za-z][\w-]*)((?:\s[^<>]*)?)>")


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (the hook's signature)
    if page.file.src_uri != PAGE:
        return html
    return TAG.sub(lambda m: m.group(0) if m.group(1).lower() in HTML
                   else m.group(0).replace("<", "&lt;").replace(">", "&gt;"), html)
