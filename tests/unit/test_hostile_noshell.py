"""No shell anywhere in berth: names and options can never become command text.

Every process berth starts gets an argument vector; nothing is ever handed to ``sh -c``, ``os.system``
or ``shell=True``. (The test harness in berth/testing may use a shell for its own fixed scripts.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import berth

SRC = Path(berth.__file__).parent
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "dash"}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def test_no_shell_is_ever_started_by_berth():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "testing" in path.relative_to(SRC).parts:
            continue
        for call in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SRC)}:{call.lineno}"
            if _name(call.func) in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                found.append(f"{where}: {_name(call.func)}")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in call.keywords):
                found.append(f"{where}: shell=")
            for arg in call.args[:1]:
                if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts and isinstance(arg.elts[0], ast.Constant) \
                        and arg.elts[0].value in SHELLS:
                    found.append(f"{where}: argv starts with a shell")
    assert found == []
