"""The Go text/template subset used by --format / -f, compared with what Go prints."""

from __future__ import annotations

import pytest

from berth.cli.gotemplate import Template, TemplateError, go_float, go_str

NET = {
    "Name": "rs-full",
    "IPAM": {"Driver": "default", "Options": None,
             "Config": [{"Subnet": "10.77.0.0/16", "Gateway": "10.77.0.254"}, {"Subnet": "fd77::/64"}]},
    "Labels": {"rs.team": "net", "rs.env": "test"},
    "Containers": {},
    "EnableIPv6": True,
    "Mtu": 1400,
    "Aliases": ["web", "db"],
}


def run(src: str, data: object = NET, **kw: bool) -> str:
    return Template(src, **kw).execute(data)


@pytest.mark.parametrize("src, expected", [
    ("{{.Name}}", "rs-full"),
    ("{{.IPAM.Driver}}", "default"),
    ("{{.IPAM.Options}}", "<nil>"),
    ("{{.Labels}}", "map[rs.env:test rs.team:net]"),
    ("{{.Aliases}}", "[web db]"),
    ("{{.EnableIPv6}} {{.Mtu}}", "true 1400"),
    ("{{.Containers}}", "map[]"),
    ("{{json .Labels}}", '{"rs.team":"net","rs.env":"test"}'),
    ("{{json .IPAM.Options}}", "null"),
    ('{{index .Labels "rs.team"}}', "net"),
    ("{{(index .IPAM.Config 1).Subnet}}", "fd77::/64"),
    ("{{range .IPAM.Config}}{{.Subnet}};{{end}}", "10.77.0.0/16;fd77::/64;"),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}},{{end}}", "rs.env=test,rs.team=net,"),
    ("{{range $i, $a := .Aliases}}{{$i}}:{{$a}} {{end}}", "0:web 1:db "),
    ("{{range .Containers}}x{{else}}none{{end}}", "none"),
    ("{{if .EnableIPv6}}v6{{else}}v4{{end}}", "v6"),
    ("{{if .IPAM.Options}}a{{else if .Name}}b{{else}}c{{end}}", "b"),
    ('{{join .Aliases ","}}', "web,db"),
    ('{{printf "%s/%d %v %q" .Name .Mtu .EnableIPv6 .Name}}', 'rs-full/1400 true "rs-full"'),
    ("{{upper .Name}} {{lower \"AB\"}} {{len .Aliases}}", "RS-FULL ab 2"),
    ("{{.Name | upper}}", "RS-FULL"),
    ("a \n {{- .Name -}} \n b", "ars-fullb"),
    ("{{/* a comment */}}x", "x"),
    ("{{with .IPAM}}{{.Driver}}{{end}}", "default"),
    ("{{$n := .Name}}{{range .Aliases}}{{$n}}.{{.}} {{end}}", "rs-full.web rs-full.db "),
    ("{{if and .EnableIPv6 (eq .Mtu 1400)}}yes{{end}}", "yes"),
    ("{{if or .IPAM.Options (ne .Name \"x\")}}yes{{end}}", "yes"),
    ("{{range .Aliases}}{{if eq . \"db\"}}{{break}}{{end}}{{.}}{{end}}", "web"),
    ("{{.Missing}}", "<no value>"),
    ('{{index .Labels "nope"}}', "<nil>"),
    ("{{range 3}}{{.}}{{end}}", "012"),
])
def test_templates(src: str, expected: str) -> None:
    assert run(src) == expected


@pytest.mark.parametrize("value, text", [
    (None, "<nil>"), (True, "true"), (3, "3"), (1.5, "1.5"), (1e21, "1e+21"), (1982340.0, "1982340"),
    ({"b": [1, None], "a": {}}, "map[a:map[] b:[1 <nil>]]"), ([], "[]"),
])
def test_go_printing(value: object, text: str) -> None:
    assert go_str(value) == text


def test_go_float_small_exponent() -> None:
    assert go_float(1.25e-05) == "1.25e-05"
    assert go_float(0.0001) == "0.0001"


@pytest.mark.parametrize("src, message", [
    ("{{.Name.Foo}}", "can't evaluate field Foo in type string"),
    ("{{nope .Name}}", 'function "nope" not defined'),
    ("{{.Name", "unclosed action"),
    ("{{if .Name}}x", "unexpected EOF"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{index .Aliases 5}}", "index out of range: 5"),
    ("{{.IPAM.Options.X}}", "nil pointer evaluating interface {}.X"),
    ("{{$x}}", "undefined variable: $x"),
])
def test_errors_are_one_line(src: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        run(src)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_key_error_option_as_inspect_uses_it() -> None:
    with pytest.raises(TemplateError, match='map has no entry for key "Nope"'):
        run("{{.Nope}}", missing_key_error=True)


class Row:
    ID = "abc"

    def Label(self, name: str) -> str:
        return {"k": "v"}.get(name, "")


def test_methods_with_arguments_on_rows() -> None:
    assert run('{{.ID}} {{.Label "k"}}', Row()) == "abc v"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        run("{{.Nope}}", Row())
