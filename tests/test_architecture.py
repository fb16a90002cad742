"""Imports flow one way: cli -> pipeline -> {metrics, data, preview, baselines, model, io}
-> {config, modalities, errors}."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mrimpute"
LAYER = {"__main__": 6, "cli": 5, "pipeline": 4, "metrics": 3, "lesion_measures": 3, "data": 2, "preview": 2,
         "baselines": 2, "preprocess": 2, "model": 1, "io": 1, "phantom": 1, "config": 0, "modalities": 0,
         "errors": -1, "__init__": -1}


def _part(module_path: Path) -> str:
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if relative.parts else ""


def _imported_parts(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            depth = len(path.relative_to(PACKAGE).parts) - node.level
            base = path.relative_to(PACKAGE).parts[:depth]
            target = (*base, *node.module.split(".")) if node.module else base  # `from .. import x`: the package
            parts.add(target[0] if target else "__init__")
    return parts


def test_imports_flow_one_way() -> None:
    for path in PACKAGE.rglob("*.py"):
        own = _part(path)
        for imported in _imported_parts(path) - {own}:
            assert LAYER[imported] < LAYER[own], \
                f"{path.relative_to(PACKAGE)} imports {imported}, against the flow"


def test_cli_is_the_only_place_that_knows_typer_and_rich() -> None:
    for path in PACKAGE.rglob("*.py"):
        if _part(path) == "cli":
            continue
        imports = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Import)}
        imports |= {(n.module or "").split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom)}
        assert not imports & {"typer", "rich"}, path
