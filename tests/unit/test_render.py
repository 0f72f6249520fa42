"""Tables, sizes, durations and inspect output as the docker CLI prints them."""

from __future__ import annotations

from berth.cli.render import Row, ellipsis, format_rows, go_time, human_size, pretty_json, tabwrite
from berth.units import human_duration


def test_tabwriter_minwidth_10_padding_3() -> None:
    assert tabwrite("NETWORK ID\tNAME\tDRIVER\tSCOPE\nabc\tbridge\tbridge\tlocal\n") == (
        "NETWORK ID   NAME      DRIVER    SCOPE\n"
        "abc          bridge    bridge    local\n")


def test_tabwriter_wide_cells_and_ragged_lines() -> None:
    assert tabwrite("a\tb\nlongest-cell-here\tc\nno tabs\n") == (
        "a                   b\nlongest-cell-here   c\nno tabs\n")
    # a line with fewer cells ends the column block: the next block is aligned on its own
    assert tabwrite("x\ty\nplain\nverylongvalue1\tz\n") == "x         y\nplain\nverylongvalue1   z\n"


def test_human_duration_and_size() -> None:
    assert [human_duration(s) for s in (0.5, 1, 45, 90, 600, 3600, 7200, 3 * 86400, 20 * 86400, 90 * 86400, 800 * 86400)] == [
        "Less than a second", "1 second", "45 seconds", "About a minute", "10 minutes", "About an hour",
        "2 hours", "3 days", "2 weeks", "3 months", "2 years"]
    assert [human_size(n) for n in (0, 999, 1000, 1982340, 12_000_000, 5 * 10**9)] == [
        "0B", "999B", "1kB", "1.98MB", "12MB", "5GB"]


def test_ellipsis_and_go_time() -> None:
    assert ellipsis("short", 20) == "short"
    assert ellipsis("abcdefghijklmnopqrstuvwxyz", 20) == "abcdefghijklmnopqrs…"
    assert go_time("2026-11-28T17:38:28.190586690Z") == "2026-11-28 17:38:28.19058669 +0000 UTC"
    assert go_time("2026-11-28T17:38:28Z") == "2026-11-28 17:38:28 +0000 UTC"


def test_pretty_json_like_go_marshal_indent() -> None:
    assert pretty_json([{"a": "<b>", "c": {}, "d": []}]) == (
        '[\n    {\n        "a": "\\u003cb\\u003e",\n        "c": {},\n        "d": []\n    }\n]')


class NameRow(Row):
    FIELDS = {"Name": "NAME", "Size": "SIZE"}

    def __init__(self, name: str, size: str) -> None:
        self.Name, self.Size = name, size


def test_format_rows_table_json_and_template() -> None:
    rows = [NameRow("a", "1B"), NameRow("bb", "20B")]
    assert format_rows(rows, None, "table {{.Name}}\t{{.Size}}", NameRow.FIELDS) == "NAME      SIZE\na         1B\nbb        20B\n"
    assert format_rows(rows, "table {{.Size}}", "", NameRow.FIELDS) == "SIZE\n1B\n20B\n"
    assert format_rows(rows, "json", "", NameRow.FIELDS) == '{"Name":"a","Size":"1B"}\n{"Name":"bb","Size":"20B"}\n'
    assert format_rows(rows, "{{.Name}}={{.Size}}", "", NameRow.FIELDS) == "a=1B\nbb=20B\n"
    assert format_rows([], None, "table {{.Name}}\t{{.Size}}", NameRow.FIELDS) == "NAME      SIZE\n"
