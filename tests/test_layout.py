"""The floor plan: one namespace, imports that only go down, one place that defines a task."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smoacs_bench.data.task import TASKS

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a module may import its own floor and the floors below it, never one above.
FLOORS = ("data", "evaluation", "methods", "benchmark")


def _modules(root: Path = ROOT):
    for floor in FLOORS:
        for path in sorted((root / floor).rglob("*.py")):
            yield floor, path


def _imports(path: Path, floor: str, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, nested ones included."""
    rel = path.relative_to(root / floor).with_suffix("")
    parts = ["smoacs_bench", floor, *rel.parts]
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def _violations(root: Path = ROOT) -> list[str]:
    bad = []
    for floor, path in _modules(root):
        level = FLOORS.index(floor)
        for line, name in _imports(path, floor, root):
            head = name.split(".")
            if head[0] in FLOORS:
                bad.append(f"{path.relative_to(root)}:{line} imports {name} (bare; use smoacs_bench.{name})")
            elif head[0] == "smoacs_bench" and len(head) > 1 and FLOORS.index(head[1]) > level:
                bad.append(f"{path.relative_to(root)}:{line}: {floor} imports {name} from a higher floor")
    return bad


def test_imports_only_go_down():
    bad = _violations()
    assert not bad, "\n".join(bad)


def test_the_import_walk_sees_upward_and_bare_imports(tmp_path):
    """The walk is not vacuous: an upward import (even inside a function, even relative) is reported."""
    for floor in FLOORS:
        (tmp_path / floor / "sub").mkdir(parents=True)
    (tmp_path / "data" / "pools.py").write_text("def f():\n    from smoacs_bench.methods import get_method\n")
    (tmp_path / "evaluation" / "sub" / "x.py").write_text("from ...benchmark import cli\nimport data.task\n")
    (tmp_path / "methods" / "ok.py").write_text("from ..data.task import Task\nfrom .base import Method\n")
    bad = _violations(tmp_path)
    assert len(bad) == 3, bad
    assert "data imports smoacs_bench.methods" in bad[0]
    assert "evaluation imports smoacs_bench.benchmark from a higher floor" in bad[1]
    assert "imports data.task (bare" in bad[2]


def test_no_other_module_keys_a_dict_by_task_name():
    names = set(TASKS)
    bad = []
    for _floor, path in _modules():
        if path == ROOT / "data" / "task.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if keys & names:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: dict keyed by {sorted(keys & names)}")
    assert not bad, "\n".join(bad)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("cwd", [ROOT, Path("/")])
def test_one_namespace(cwd):
    assert _python("import smoacs_bench.evaluation, smoacs_bench.data.task", cwd).returncode == 0
    for bare in FLOORS:
        done = _python(f"import {bare}", cwd)
        assert done.returncode != 0, f"`import {bare}` worked from {cwd}"
        assert "ModuleNotFoundError" in done.stderr or "installs as smoacs_bench" in done.stderr
