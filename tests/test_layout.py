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


METHOD_PACKAGES = ("ftcp", "smoacs", "tpe", "reference", "screening")


def test_the_harness_names_no_method():
    """benchmark/ reaches methods through the registry and the Method interface only."""
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}"
           for floor, path in _modules() if floor == "benchmark"
           for line, name in _imports(path, floor)
           if name.split(".")[:3][-1:] and name.startswith("smoacs_bench.methods.")
           and name.split(".")[2] in METHOD_PACKAGES]
    assert not bad, "\n".join(bad)


def _module_name(floor: str, path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root / floor).with_suffix("")
    parts = ["smoacs_bench", floor, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cycles(root: Path = ROOT) -> list[list[str]]:
    """Import cycles between modules (nested imports included), each as the list of modules on it."""
    modules = {_module_name(f, p, root): (f, p) for f, p in _modules(root)}
    graph = {m: set() for m in modules}
    for m, (floor, path) in modules.items():
        for _line, name in _imports(path, floor, root):
            parts = name.split(".")
            for k in range(len(parts), 1, -1):   # `from pkg.mod import x`: the deepest module that exists
                target = ".".join(parts[:k])
                if target in modules and target != m:
                    # a package's own module importing the package itself (its __init__) is how packages work;
                    # every other edge counts, also one to or from an __init__
                    inside = modules[target][1].name == "__init__.py" and m.startswith(target + ".")
                    if not inside:
                        graph[m].add(target)
                    break
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_walk_finds_a_cycle(tmp_path):
    for floor in FLOORS:
        (tmp_path / floor).mkdir()
    (tmp_path / "benchmark" / "a.py").write_text("def f():\n    from smoacs_bench.benchmark.b import g\n")
    (tmp_path / "benchmark" / "b.py").write_text("from .a import f\n")
    assert _cycles(tmp_path) == [["smoacs_bench.benchmark.a", "smoacs_bench.benchmark.b", "smoacs_bench.benchmark.a"]]


def test_the_cycle_walk_finds_a_cycle_through_a_package_init(tmp_path):
    """base -> pkg (its __init__ re-exports pkg.reg) -> pkg.reg -> base is a cycle; pkg.reg importing pkg is not."""
    for floor in FLOORS:
        (tmp_path / floor).mkdir()
    (tmp_path / "methods" / "pkg").mkdir()
    (tmp_path / "methods" / "base.py").write_text("from smoacs_bench.methods.pkg import thing\n")
    (tmp_path / "methods" / "pkg" / "__init__.py").write_text("from .reg import thing\n")
    (tmp_path / "methods" / "pkg" / "reg.py").write_text("def thing():\n    from smoacs_bench.methods.base import x\n")
    (tmp_path / "methods" / "pkg" / "other.py").write_text("from smoacs_bench.methods.pkg import thing\n")
    assert _cycles(tmp_path) == [["smoacs_bench.methods.base", "smoacs_bench.methods.pkg",
                                  "smoacs_bench.methods.pkg.reg", "smoacs_bench.methods.base"]]
