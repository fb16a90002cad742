"""Small modules with one job: no function over 60 lines (counted from its first decorator) and no file over 300
lines in src/."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 300


def _long_functions(text: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of each function, nested ones and methods included, longer than the limit."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.name, node.lineno, length))
    return found


def test_no_function_is_over_60_lines() -> None:
    offenders = [f"{path.relative_to(SOURCE)}:{line} {name} ({length} lines)"
                 for path in sorted(SOURCE.rglob("*.py")) for name, line, length in _long_functions(path.read_text())]
    assert not offenders, "functions over 60 lines: " + "; ".join(offenders)


def test_no_file_is_over_300_lines() -> None:
    offenders = [f"{path.relative_to(SOURCE)} ({n} lines)" for path in sorted(SOURCE.rglob("*.py"))
                 if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES]
    assert not offenders, "files over 300 lines: " + "; ".join(offenders)


def test_a_decorated_function_counts_from_its_decorator() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(58))
    decorated = f"@decorator\n@another\ndef f():\n{body}\n"  # 2 + 1 + 58 = 61 lines
    assert _long_functions(decorated) == [("f", 3, 61)]
    assert _long_functions(decorated.replace("@another\n", "")) == []  # 60 lines: allowed
