"""The project modules a stage script imports, transitively (module level and inside functions alike), as
the dvc.yaml `deps` list them. `python tests/imports.py stages/train.py` prints them."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "avemo"


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    if path.name == "__init__.py":
        here = ".".join(path.relative_to(ROOT).parent.parts)
    else:
        here = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1] if here else []
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}
    return out


def transitive(script: Path) -> set[Path]:
    """Every file of the package reached from `script` (the packages' __init__ files on the way included)."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        for name in _imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                found = module_path(".".join(parts[:i]))
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    return seen


def relative(paths) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in paths)


if __name__ == "__main__":
    for script in sys.argv[1:]:
        print(f"{script}:")
        for path in relative(transitive(ROOT / script)):
            print(f"      - {path}")
