"""Output exactly as the docker CLI prints it: tabwriter tables, ``--format`` (``table …``, ``json``, Go
templates), the inspect pretty-printer and go-units' human durations and sizes."""

from __future__ import annotations

import json
from typing import Any, Iterable

from berth.cli.errors import CLIError
from berth.cli.gotemplate import Template, TemplateError, go_str, to_json


# -- Go's text/tabwriter as docker configures it: NewWriter(out, 10, 1, 3, ' ', 0) ---------------

def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-terminated cells into columns, column block by column block, as Go's tabwriter does.

    The text after a line's last tab is not part of any column (it is never padded).
    """
    lines = [line.split("\t") for line in text.split("\n")]
    if lines and lines[-1] == [""]:
        lines.pop()
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for cells in lines[line0:line1]:
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell.ljust(widths[j]) if j < len(widths) and j < len(cells) - 1 else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "".join(line + "\n" for line in out)


# -- go-units ---------------------------------------------------------------------------------

def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, three significant digits ("1.98MB")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: cut to ``width`` characters, the last one replaced by "…"."""
    if len(text) <= width:
        return text
    return text[:width - 1] + "…" if width > 1 else text[:width]


def go_time(stamp: str) -> str:
    """An RFC 3339 UTC timestamp as Go's time.Time.String() prints it: ``2026-11-28 17:38:28.19058669 +0000 UTC``."""
    if not stamp:
        return "0001-01-01 00:00:00 +0000 UTC"
    date, _, clock = stamp.rstrip("Z").partition("T")
    if "+" in clock:
        clock = clock.split("+", 1)[0]
    whole, _, frac = clock.partition(".")
    frac = frac.rstrip("0")
    return f"{date} {whole}{'.' + frac if frac else ''} +0000 UTC"


def pretty_json(value: Any) -> str:
    """Go's json.MarshalIndent(v, "", "    "): 4-space indent, UTF-8, HTML characters escaped."""
    text = json.dumps(value, indent=4, ensure_ascii=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


# -- rows and --format ------------------------------------------------------------------------

class Row:
    """One line of a list command; ``FIELDS`` maps each template field to its table header.

    Subclasses expose the fields as attributes or properties; methods with arguments (``Label``) are
    template methods. ``json_value`` is what ``{{json .}}`` and ``--format json`` print.
    """

    FIELDS: dict[str, str] = {}
    type_name = "row"

    def json_value(self) -> dict[str, str]:
        return {name: go_str(getattr(self, name)) for name in sorted(self.FIELDS)}


class _Header:
    """What a ``table`` format's header line is rendered from: every field yields its column title."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        title = self._fields.get(name, name.upper())
        return _Title(title)


class _Title(str):
    """A header title that can also be called like a template method (``.Label "k"`` → ``LABEL``)."""

    def __call__(self, *args: Any) -> str:
        return str(self)


def parse_template(source: str, missing_key_error: bool = False) -> Template:
    try:
        return Template(source, missing_key_error)
    except TemplateError as err:
        raise CLIError(f"template parsing error: {err}") from None


def execute(template: Template, data: Any) -> str:
    try:
        return template.execute(data)
    except TemplateError as err:
        raise CLIError(str(err)) from None


def format_rows(rows: Iterable[Row], fmt: str | None, default: str, fields: dict[str, str]) -> str:
    """Render rows the way docker's formatter.Context does for ``--format`` (or the default table).

    ``table …`` goes through the tabwriter with a header made from the same template; ``json`` prints
    one object per line; anything else is a Go template printed once per row.
    """
    fmt = default if not fmt or fmt == "table" else fmt
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = parse_template(fmt)
    body = "".join(execute(template, row) + "\n" for row in rows)
    if not table:
        return body
    header = execute(template, _Header(fields))
    return tabwrite(header + "\n" + body)


def print_json_lines(values: Iterable[Any]) -> str:
    return "".join(to_json(v) + "\n" for v in values)
