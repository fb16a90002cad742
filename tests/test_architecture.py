"""Imports flow one way: cli -> pipeline (the jobs) -> runtime (what the jobs share) -> metrics -> {data, preview,
baselines} -> lesions -> preprocess -> {io, model, phantom} -> {config, modalities} -> errors; relative and absolute
imports alike. The bench job is a leaf: only its command imports it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mrimpute"
LAYER = {"__main__": 9, "cli": 8, "pipeline": 7, "runtime": 6, "metrics": 5, "data": 4, "preview": 4,
         "baselines": 4, "lesions": 3, "preprocess": 2, "model": 1, "io": 1, "phantom": 1, "config": 0,
         "modalities": 0, "errors": -1, "__init__": -1}


def _modules(relative: Path) -> tuple[str, ...]:
    """A file's dotted module path inside the package (a package's __init__ is the package itself)."""
    parts = relative.with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_modules(relative: Path, text: str) -> set[tuple[str, ...]]:
    """Every module of the package a file imports (inside the package, as a path of names), whether by a relative
    import, `from mrimpute.x import y` or `import mrimpute.x`; `from pkg import name` counts `pkg.name` when that
    is a module, else `pkg`."""
    package = relative.parent.parts
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "mrimpute"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
            elif (node.module or "").split(".")[0] == "mrimpute":
                base = ()
            else:
                continue
            module = (*base, *(node.module.split(".") if node.module else ()))
            if module[:1] == ("mrimpute",) and not node.level:
                module = module[1:]
            for alias in node.names:
                child = PACKAGE.joinpath(*module, alias.name)
                is_module = child.is_dir() or child.with_suffix(".py").is_file()
                found.add((*module, alias.name) if is_module else module)
    return found


def _part(module: tuple[str, ...]) -> str:
    return module[0] if module else "__init__"


def test_imports_flow_one_way() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        own = _part(_modules(relative))
        for imported in {_part(m) for m in _imported_modules(relative, path.read_text())} - {own}:
            assert LAYER[imported] < LAYER[own], f"{relative} imports {imported}, against the flow"


def test_absolute_and_relative_imports_are_both_seen() -> None:
    text = ("import mrimpute.cli.app\nfrom mrimpute.pipeline import train\nfrom mrimpute import modalities\n"
            "from .. import errors\nfrom ..lesions.masks import binarise\nfrom . import device\nimport numpy\n")
    seen = _imported_modules(Path("runtime/x.py"), text)
    assert seen == {("cli", "app"), ("pipeline", "train"), ("modalities",), ("errors",), ("lesions", "masks"),
                    ("runtime", "device")}
    assert LAYER[_part(("pipeline", "train"))] > LAYER["runtime"]  # so the flow test refuses that import


def test_only_the_bench_command_imports_the_bench_job() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[:2] == ("pipeline", "bench") or relative == Path("cli/bench_cmd.py"):
            continue
        assert not any(m[:2] == ("pipeline", "bench") for m in _imported_modules(relative, path.read_text())), \
            f"{relative} imports the bench job"


def test_cli_is_the_only_place_that_knows_typer_and_rich() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        imports = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Import)}
        imports |= {(n.module or "").split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom)}
        assert not imports & {"typer", "rich"}, path
