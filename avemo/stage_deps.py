"""The project code each DVC stage runs: the modules its script imports, transitively (at module level and
inside functions, package __init__ files on the way, and every encoder module for the encoder registry,
which finds them by name). dvc.yaml lists them in each stage's `deps`, a package folder as one entry when
the stage runs all of it; `avemo profile` writes those lists and `avemo profile --check` says when they are
stale. `python -m avemo.stage_deps stages/train.py` prints one script's."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "avemo"
SCRIPT = re.compile(r"\bstages/\w+\.py\b")


def module_path(name: str, root: Path = ROOT) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name `path` imports, relative imports resolved."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(root)
    here = ".".join(rel.parent.parts) if path.name == "__init__.py" else ".".join(rel.with_suffix("").parts[:-1])
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


def discovered(path: Path, root: Path = ROOT) -> list[Path]:
    """Modules that `path` loads by name rather than by an import statement: the encoder registry's."""
    from .encoders.registry import DECLARES

    registry = root / PACKAGE / "encoders" / "registry.py"
    if path.resolve() != registry.resolve():
        return []
    return sorted(p for p in registry.parent.glob("*.py") if DECLARES.search(p.read_text()))


def transitive(script: Path, root: Path = ROOT) -> set[Path]:
    """Every file of the package reached from `script` (the packages' __init__ files on the way included)."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        found = list(discovered(path, root))
        for name in imported_names(path, root):
            parts = name.split(".")
            found += [module_path(".".join(parts[:i]), root) for i in range(1, len(parts) + 1)]  # a/__init__ first
        for module in found:
            if module is not None and module.resolve() not in seen:
                seen.add(module.resolve())
                todo.append(module.resolve())
    return seen


def relative(paths, root: Path = ROOT) -> list[str]:
    return sorted(str(p.relative_to(root.resolve())) for p in paths)


def listed(files: set[str], root: Path = ROOT) -> list[str]:
    """`files` as dvc.yaml lists them: a package folder whose every module is among them as one entry
    ('avemo/models/'), the others one by one."""
    out, covered = [], set()
    for folder in sorted({str(Path(f).parent) for f in files} - {PACKAGE}, key=lambda f: (f.count("/"), f)):
        if any(folder.startswith(c) for c in covered):
            continue
        inside = {str(p.relative_to(root)) for p in (root / folder).rglob("*.py")}
        if inside <= files:
            out.append(f"{folder}/")
            covered.add(f"{folder}/")
    out += [f for f in files if not any(f.startswith(c) for c in covered)]
    return sorted(out)


def stage_code(script: str, root: Path = ROOT) -> list[str]:
    """What dvc.yaml lists as the code of the stage that runs `script` (besides the script itself)."""
    root = Path(root).resolve()
    return listed(set(relative(transitive(root / script, root), root)), root)


def is_code(dep) -> bool:
    return isinstance(dep, str) and dep.startswith(f"{PACKAGE}/")


def stages_of(dvc: dict) -> dict[str, dict]:
    """Each stage's body (a foreach stage's `do`)."""
    return {name: stage.get("do", stage) for name, stage in dvc["stages"].items()}


def script_of(body: dict) -> str | None:
    found = SCRIPT.findall(" ".join(str(body.get("cmd", "")).split()))
    return found[0] if found else None


def stale_stages(dvc: dict, root: Path = ROOT) -> list[str]:
    """Stages whose listed code differs from what their script runs."""
    return [name for name, body in stages_of(dvc).items() if script_of(body)
            and [d for d in body.get("deps", []) if is_code(d)] != stage_code(script_of(body), root)]


def write_stage_code(path: Path, root: Path = ROOT) -> list[str]:
    """Rewrite the code entries of every stage's deps in dvc.yaml (after its script), keeping the rest of
    the file as it is; returns the stages that changed."""
    from ruamel.yaml import YAML

    from .io import write_bytes

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    data = yaml.load(path.read_text())
    changed = stale_stages(data, root)
    for name in changed:
        deps = stages_of(data)[name]["deps"]
        script = script_of(stages_of(data)[name])
        keep = [d for d in deps if not is_code(d)]
        at = keep.index(script) + 1 if script in keep else 0
        deps[:] = keep[:at] + stage_code(script, root) + keep[at:]
    if changed:
        import io

        buffer = io.StringIO()
        yaml.dump(data, buffer)
        write_bytes(path, buffer.getvalue().encode())
    return changed


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}:")
        for entry in stage_code(arg):
            print(f"      - {entry}")
