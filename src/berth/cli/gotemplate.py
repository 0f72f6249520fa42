"""The part of Go's text/template that docker users write in ``--format`` / ``-f``.

Supported: text and actions with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``; field chains on
``.``, ``$``, variables and parenthesised pipelines (``(index .L 0).Subnet``); method calls with
arguments on row objects (``.Label "k"``); pipelines with ``|``; variables (``$x := …``, ``$x = …``,
``range $k, $v := …``); ``if``/``else if``/``else``, ``range`` (lists, and maps in sorted key order as Go
does) with ``else``, ``break``/``continue``, ``with``; Go's builtins (``and or not len index print printf
println eq ne lt le gt ge``) and docker's (``json join split upper lower title pad truncate``). Values print
as Go's ``%v`` prints the decoded JSON (``map[k:v]``, ``[a b]``, ``<nil>``, ``true``); a missing map key
prints ``<no value>`` like Go.

Templates evaluate against decoded JSON (dicts, lists, str, int, float, bool, None) and against row
objects whose public attributes are the template fields (methods are called, with arguments if given).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator


class TemplateError(Exception):
    """A template that does not parse or fails while executing; the message is one line."""


class _Missing:
    """Go's invalid reflect.Value: what a map lookup of an absent key yields (prints ``<no value>``)."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# -- printing values as Go's fmt %v does -------------------------------------------------------

def go_float(value: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64) as %v uses it: shortest digits, exponent outside [1e-4, 1e21)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    from decimal import Decimal

    number = Decimal(repr(value)).normalize()
    exponent = number.adjusted()
    if -4 <= exponent < 21:
        text = format(number, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    sign, digits, _ = number.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def go_str(value: Any) -> str:
    """``fmt.Sprint`` of one value."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if hasattr(value, "go_string"):
        return value.go_string()
    return str(value)


def truthy(value: Any) -> bool:
    """Go's template truth: false, 0, nil, empty string/list/map and an absent value are false."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def to_json(value: Any) -> str:
    """docker's ``json`` function: compact JSON without HTML escaping, keys in the order received."""
    if value is MISSING:
        value = None
    if hasattr(value, "json_value"):
        value = value.json_value()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- functions -------------------------------------------------------------------------------

def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"error calling index: cannot index slice/array with type {type(key).__name__}")
            if not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None or item is MISSING:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(item).__name__}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, (str, list, tuple, dict)):
        return len(item)
    raise TemplateError(f"error calling len: len of type {type(item).__name__}")


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError(f"wrong type for value; expected []string; got {type(items).__name__}")
    return sep.join(go_str(i) for i in items)


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(arg)
    return out


def _quote(value: Any) -> str:
    return json.dumps(go_str(value), ensure_ascii=False)


def sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %t %x %f %g and %%, with flags and width."""
    out: list[str] = []
    argi = 0
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        spec, verb = fmt[i + 1:j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        if verb in "vs":
            out.append(f"%{spec}s" % go_str(arg))
        elif verb == "q":
            out.append(f"%{spec}s" % _quote(arg))
        elif verb == "t" and isinstance(arg, bool):
            out.append(f"%{spec}s" % go_str(arg))
        elif verb in "dxXo" and isinstance(arg, (int, float)) and not isinstance(arg, bool) and arg == int(arg):
            out.append(f"%{spec}{verb}" % int(arg))
        elif verb in "feEgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            out.append(f"%{spec}{verb}" % arg)
        else:
            out.append(f"%!{verb}({type(arg).__name__}={go_str(arg)})")
    if argi < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{type(a).__name__}={go_str(a)}" for a in args[argi:]) + ")")
    return "".join(out)


def _basic(value: Any) -> Any:
    if value is MISSING:
        return None
    return value


def _compare(name: str, a: Any, b: Any) -> Any:
    a, b = _basic(a), _basic(b)
    numbers = (int, float)
    comparable = (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool)
                  ) or type(a) is type(b)
    if name in ("eq", "ne"):
        if not comparable and a is not None and b is not None:
            raise TemplateError(f"error calling {name}: incompatible types for comparison")
        return (a == b) == (name == "eq")
    if not comparable or isinstance(a, (bool, dict, list, type(None))):
        raise TemplateError(f"error calling {name}: invalid type for comparison")
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("error calling eq: missing argument for comparison")
    return any(_compare("eq", a, b) for b in others)


def _pad(s: Any, prefix: int, suffix: int) -> str:
    return " " * prefix + go_str(s) + " " * suffix


def _truncate(s: Any, n: int) -> str:
    text = go_str(s)
    return text[:n] if len(text) > n else text


FUNCS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "join": _join,
    "split": lambda s, sep: go_str(s).split(sep),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "pad": _pad,
    "truncate": _truncate,
    "len": _len,
    "index": _index,
    "print": _sprint,
    "printf": sprintf,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "not": lambda v: not truthy(v),
    "eq": _eq,
    "ne": lambda a, b: _compare("ne", a, b),
    "lt": lambda a, b: _compare("lt", a, b),
    "le": lambda a, b: _compare("le", a, b),
    "gt": lambda a, b: _compare("gt", a, b),
    "ge": lambda a, b: _compare("ge", a, b),
}
# ``and``/``or`` evaluate lazily, so they are handled by the executor itself.
LAZY_FUNCS = ("and", "or")


# -- lexer -----------------------------------------------------------------------------------

class Token:
    __slots__ = ("kind", "value", "pos", "spaced")

    def __init__(self, kind: str, value: Any, pos: int, spaced: bool) -> None:
        self.kind = kind      # field, var, dot, ident, string, number, bool, nil, (, ), |, :=, =, ",", end
        self.value = value
        self.pos = pos
        self.spaced = spaced  # whitespace before it: ``(x).A`` chains only when unspaced


def _lex_action(src: str, start: int, stop: int) -> list[Token]:
    tokens: list[Token] = []
    i = start
    spaced = True
    while i < stop:
        ch = src[i]
        if ch in " \t\r\n":
            i += 1
            spaced = True
            continue
        begin = i
        if ch in "()|,":
            i += 1
            kind, value = ch, ch
        elif src.startswith(":=", i):
            i += 2
            kind, value = ":=", ":="
        elif ch == "=":
            i += 1
            kind, value = "=", "="
        elif ch == '"':
            j = i + 1
            while j < stop and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            if j >= stop:
                raise TemplateError(f"template: :{_line(src, i)}: unterminated quoted string")
            try:
                value = json.loads(src[i:j + 1])
            except ValueError:
                raise TemplateError(f"template: :{_line(src, i)}: invalid syntax in quoted string") from None
            i = j + 1
            kind = "string"
        elif ch == "`":
            j = src.find("`", i + 1, stop)
            if j < 0:
                raise TemplateError(f"template: :{_line(src, i)}: unterminated raw quoted string")
            kind, value, i = "string", src[i + 1:j], j + 1
        elif ch == "." or ch == "$" or ch.isalpha() or ch == "_":
            j = i + 1
            while j < stop and (src[j].isalnum() or src[j] in "_."):
                j += 1
            word = src[i:j]
            i = j
            if word == ".":
                kind, value = "dot", None
            elif word.startswith("."):
                kind, value = "field", [p for p in word[1:].split(".")]
            elif word.startswith("$"):
                name, *fields = word.split(".")
                kind, value = "var", (name, fields)
            elif word in ("true", "false"):
                kind, value = "bool", word == "true"
            elif word == "nil":
                kind, value = "nil", None
            else:
                kind, value = "ident", word
            if kind in ("field", "var") and any(not p for p in (value if kind == "field" else value[1])):
                raise TemplateError(f"template: :{_line(src, begin)}: bad field syntax {word!r}")
        elif ch.isdigit() or (ch in "+-" and i + 1 < stop and src[i + 1].isdigit()):
            j = i + 1
            while j < stop and (src[j].isalnum() or src[j] in "._+-") and not (src[j] in "+-" and src[j - 1] not in "eE"):
                j += 1
            text = src[i:j].replace("_", "")
            i = j
            try:
                value = int(text, 0)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    raise TemplateError(f"template: :{_line(src, begin)}: bad number syntax: {text!r}") from None
            kind = "number"
        else:
            raise TemplateError(f"template: :{_line(src, i)}: unexpected {ch!r} in command")
        tokens.append(Token(kind, value, begin, spaced))
        spaced = False
    tokens.append(Token("end", None, stop, True))
    return tokens


def _line(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


# -- parse tree ------------------------------------------------------------------------------

class Node:
    pos = 0


class Text(Node):
    def __init__(self, text: str) -> None:
        self.text = text


class Term(Node):
    """An operand: kind is dot, field (on dot), var, literal, ident (function) or paren; then ``fields``."""

    def __init__(self, kind: str, value: Any, fields: list[str], pos: int, source: str) -> None:
        self.kind, self.value, self.fields, self.pos, self.source = kind, value, fields, pos, source


class Command(Node):
    def __init__(self, args: list[Term]) -> None:
        self.args = args


class Pipe(Node):
    def __init__(self, decl: list[str], assign: bool, cmds: list[Command], pos: int) -> None:
        self.decl, self.assign, self.cmds, self.pos = decl, assign, cmds, pos


class Action(Node):
    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe


class Branch(Node):
    def __init__(self, kind: str, pipe: Pipe, body: list[Node], alt: list[Node]) -> None:
        self.kind, self.pipe, self.body, self.alt = kind, pipe, body, alt


class Jump(Node):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # break | continue


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.items = list(self._split(src))
        self.i = 0
        self.loops = 0

    @staticmethod
    def _split(src: str) -> Iterator[tuple[str, Any]]:
        """Text pieces and action token lists, applying the trim markers."""
        pos = 0
        trim_next = False
        while True:
            open_at = src.find("{{", pos)
            text = src[pos:] if open_at < 0 else src[pos:open_at]
            trim_left = open_at >= 0 and src[open_at + 2:open_at + 4] in ("- ", "-\t", "-\n", "-\r")
            if trim_next:
                text = text.lstrip(" \t\r\n")
            if trim_left:
                text = text.rstrip(" \t\r\n")
            if text:
                yield "text", text
            if open_at < 0:
                return
            start = open_at + (3 if trim_left else 2)
            close = src.find("}}", start)
            if close < 0:
                raise TemplateError(f"template: :{_line(src, open_at)}: unclosed action")
            trim_next = close - 2 >= start and src[close - 1] == "-" and src[close - 2] in " \t\r\n"
            stop = close - 1 if trim_next else close
            body = src[start:stop].strip()
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"template: :{_line(src, open_at)}: unclosed comment")
            else:
                yield "action", _lex_action(src, start, stop)
            pos = close + 2

    def parse(self) -> list[Node]:
        nodes, end = self._list()
        if end is not None:
            raise TemplateError(f"template: :{_line(self.src, end.pos)}: unexpected {{{{{end.value}}}}}")
        return nodes

    def _list(self) -> tuple[list[Node], Token | None]:
        """Nodes up to an ``end``/``else`` (returned as its token, with the rest of that action) or EOF."""
        nodes: list[Node] = []
        while self.i < len(self.items):
            kind, item = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(Text(item))
                continue
            head = item[0]
            word = head.value if head.kind == "ident" else None
            if word in ("end", "else"):
                self._rest = item[1:]
                return nodes, head
            if word in ("if", "range", "with"):
                nodes.append(self._branch(word, item[1:]))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise TemplateError(f"template: :{_line(self.src, head.pos)}: {{{{{word}}}}} outside {{{{range}}}}")
                nodes.append(Jump(word))
            elif word in ("define", "template", "block"):
                raise TemplateError(f"template: :{_line(self.src, head.pos)}: {{{{{word}}}}} is not supported")
            else:
                nodes.append(Action(_PipeParser(self.src, item).pipe(allow_decl=True)))
        return nodes, None

    def _branch(self, kind: str, tokens: list[Token]) -> Branch:
        pipe = _PipeParser(self.src, tokens).pipe(allow_decl=True, allow_two=kind == "range")
        if kind == "range":
            self.loops += 1
        body, end = self._list()
        if kind == "range":
            self.loops -= 1
        alt: list[Node] = []
        if end is None:
            raise TemplateError(f"template: :{_line(self.src, pipe.pos)}: unexpected EOF")
        if end.value == "else":
            rest = self._rest
            if rest[0].kind == "ident" and rest[0].value in ("if", "with") and kind != "range":
                alt = [self._branch(rest[0].value, rest[1:])]  # else if / else with: shares the outer end
                return Branch(kind, pipe, body, alt)
            alt, end = self._list()
            if end is None or end.value != "end":
                raise TemplateError(f"template: :{_line(self.src, pipe.pos)}: expected end; found {end.value if end else 'EOF'}")
        if len(self._rest) > 1:
            raise TemplateError(f"template: :{_line(self.src, end.pos)}: unexpected {self._rest[0].value!r} in end")
        return Branch(kind, pipe, body, alt)


class _PipeParser:
    def __init__(self, src: str, tokens: list[Token]) -> None:
        self.src, self.tokens, self.i = src, tokens, 0

    def _peek(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, tok: Token, what: str) -> TemplateError:
        return TemplateError(f"template: :{_line(self.src, tok.pos)}: {what}")

    def pipe(self, allow_decl: bool = False, allow_two: bool = False, closing: str = "end") -> Pipe:
        start = self._peek()
        decl: list[str] = []
        assign = False
        if allow_decl and start.kind == "var" and not start.value[1]:
            names = [start.value[0]]
            j = 1
            if allow_two and self.tokens[j].kind == "," and self.tokens[j + 1].kind == "var":
                names.append(self.tokens[j + 1].value[0])
                j += 2
            if self.tokens[j].kind in (":=", "="):
                decl, assign = names, self.tokens[j].kind == "="
                self.i = j + 1
        cmds: list[Command] = []
        while True:
            args: list[Term] = []
            while self._peek().kind not in ("|", closing, ")"):
                args.append(self._term())
            if not args:
                raise self._fail(self._peek(), "missing value for command" if not cmds else "missing command after |")
            cmds.append(Command(args))
            if self._peek().kind != "|":
                break
            self._next()
        if self._peek().kind != closing:
            raise self._fail(self._peek(), f"unexpected {self._peek().value!r} in operand")
        return Pipe(decl, assign, cmds, start.pos)

    def _term(self) -> Term:
        tok = self._next()
        source = self.src[tok.pos:self.tokens[self.i].pos].strip()
        if tok.kind == "field":
            return Term("field", None, tok.value, tok.pos, source)
        if tok.kind == "var":
            return Term("var", tok.value[0], tok.value[1], tok.pos, source)
        if tok.kind == "dot":
            return Term("dot", None, [], tok.pos, source)
        if tok.kind == "ident":
            if tok.value not in FUNCS and tok.value not in LAZY_FUNCS:
                raise self._fail(tok, f'function "{tok.value}" not defined')
            return Term("ident", tok.value, [], tok.pos, source)
        if tok.kind in ("string", "number", "bool", "nil"):
            return Term("literal", tok.value, [], tok.pos, source)
        if tok.kind == "(":
            inner = self.pipe(closing=")")
            self._next()
            fields: list[str] = []
            while self._peek().kind == "field" and not self._peek().spaced:
                fields += self._next().value
            return Term("paren", inner, fields, tok.pos, self.src[tok.pos:self.tokens[self.i].pos].strip())
        raise self._fail(tok, f"unexpected {tok.value!r} in operand")


# -- execution -------------------------------------------------------------------------------

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if value is None or value is MISSING:
        return "interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    return getattr(value, "type_name", type(value).__name__)


class Template:
    """A parsed template; ``execute(data)`` returns the text. Raises ``TemplateError`` with one line."""

    def __init__(self, source: str, missing_key_error: bool = False) -> None:
        """``missing_key_error``: Go's ``missingkey=error`` option, which ``inspect`` uses on raw JSON."""
        self.source = source
        self.missing_key_error = missing_key_error
        self.nodes = _Parser(source).parse()

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._walk(self.nodes, data, [{"$": data}], out)
        return "".join(out)

    def _fail(self, node: Node, source: str, what: str) -> TemplateError:
        line = _line(self.source, node.pos)
        col = node.pos - (self.source.rfind("\n", 0, node.pos) + 1)
        return TemplateError(f'template: :{line}:{col}: executing "" at <{source}>: {what}')

    def _walk(self, nodes: list[Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                out.append(node.text)
            elif isinstance(node, Action):
                value = self._pipe(node.pipe, dot, scopes)
                if not node.pipe.decl:
                    out.append(go_str(value))
            elif isinstance(node, Branch):
                self._branch(node, dot, scopes, out)
            elif isinstance(node, Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def _branch(self, node: Branch, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        scopes = scopes + [{}]
        if node.kind != "range":
            value = self._pipe(node.pipe, dot, scopes)
            if truthy(value):
                self._walk(node.body, value if node.kind == "with" else dot, scopes, out)
            else:
                self._walk(node.alt, dot, scopes, out)
            return
        value = self._pipe(node.pipe, dot, scopes, declare=False)
        if value is None or value is MISSING:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise self._fail(node.pipe, "range", f"range can't iterate over {go_str(value)}")
        if not items:
            self._walk(node.alt, dot, scopes, out)
            return
        for key, elem in items:
            scope = scopes[-1]
            if len(node.pipe.decl) == 2:
                scope[node.pipe.decl[0]], scope[node.pipe.decl[1]] = key, elem
            elif node.pipe.decl:
                scope[node.pipe.decl[0]] = elem
            try:
                self._walk(node.body, elem, scopes, out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, pipe: Pipe, dot: Any, scopes: list[dict[str, Any]], declare: bool = True) -> Any:
        value: Any = MISSING
        for i, cmd in enumerate(pipe.cmds):
            value = self._command(cmd, dot, scopes, value if i else MISSING, piped=i > 0)
        if pipe.decl and declare:
            name = pipe.decl[0]
            if pipe.assign:
                for scope in reversed(scopes):
                    if name in scope:
                        scope[name] = value
                        break
                else:
                    raise self._fail(pipe, name, f"undefined variable: {name}")
            else:
                scopes[-1][name] = value
        return value

    def _command(self, cmd: Command, dot: Any, scopes: list[dict[str, Any]], piped_value: Any, piped: bool) -> Any:
        first, rest = cmd.args[0], cmd.args[1:]
        if first.kind == "ident":
            if first.value in LAZY_FUNCS:
                operands = [lambda t=t: self._term(t, dot, scopes) for t in rest]
                if piped:
                    operands.append(lambda: piped_value)
                if not operands:
                    raise self._fail(first, first.source, f"wrong number of args for {first.value}: want at least 1 got 0")
                result: Any = None
                for get in operands:
                    result = get()
                    if truthy(result) != (first.value == "and"):
                        return result
                return result
            args = [self._term(t, dot, scopes) for t in rest]
            if piped:
                args.append(piped_value)
            try:
                return FUNCS[first.value](*args)
            except TemplateError as err:
                raise self._fail(first, first.source, str(err)) from None
            except TypeError:
                raise self._fail(first, first.source, f"wrong number or type of args for {first.value}") from None
        if rest or piped:
            if first.kind not in ("field", "var", "paren") or not first.fields:
                raise self._fail(first, first.source, f"can't give argument to non-function {first.source}")
            receiver = self._term(first, dot, scopes, drop_last=True)
            method = self._field(first, receiver, first.fields[-1], want_callable=True)
            args = [self._term(t, dot, scopes) for t in rest] + ([piped_value] if piped else [])
            try:
                return method(*args)
            except TypeError:
                raise self._fail(first, first.source, f"wrong number of args for {first.fields[-1]}") from None
        return self._term(first, dot, scopes)

    def _term(self, term: Term, dot: Any, scopes: list[dict[str, Any]], drop_last: bool = False) -> Any:
        if term.kind == "literal":
            return term.value
        if term.kind == "ident":
            return self._command(Command([term]), dot, scopes, MISSING, False)
        if term.kind == "var":
            for scope in reversed(scopes):
                if term.value in scope:
                    value = scope[term.value]
                    break
            else:
                raise self._fail(term, term.source, f"undefined variable: {term.value}")
        elif term.kind == "paren":
            value = self._pipe(term.value, dot, scopes)
        else:
            value = dot
        fields = term.fields[:-1] if drop_last else term.fields
        for name in fields:
            value = self._field(term, value, name)
            if callable(value):
                value = value()
        return value

    def _field(self, term: Term, value: Any, name: str, want_callable: bool = False) -> Any:
        if isinstance(value, dict):
            if want_callable:
                raise self._fail(term, term.source, f"{name} is not a method but has arguments")
            if name not in value and self.missing_key_error:
                raise self._fail(term, term.source, f'map has no entry for key "{name}"')
            return value.get(name, MISSING)
        if value is None or value is MISSING:
            raise self._fail(term, term.source, f"nil pointer evaluating interface {{}}.{name}")
        if name.startswith("_") or isinstance(value, (str, int, float, bool, list, tuple)) or not hasattr(value, name):
            raise self._fail(term, term.source, f"can't evaluate field {name} in type {_type_name(value)}")
        attr = getattr(value, name)
        if want_callable and not callable(attr):
            raise self._fail(term, term.source, f"{name} is not a method but has arguments")
        return attr
