"""The package's modules import each other without a circle, counting the imports inside
functions too (which would otherwise hide one until a call order changes); and only the heavy
libraries are imported inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "platform"


def _module_graph() -> dict[str, set[str]]:
    files = {}
    for f in (ROOT / "dampeml").rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        targets = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dampeml"):
                for alias in node.names:  # `from dampeml.x import y`: the module y, or x
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in files else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("dampeml.")}
        graph[name] = {t for t in targets if t in files and t not in (name, "dampeml")}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                out.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_the_package_imports_itself_through_others():
    graph = _module_graph()
    assert len(graph) > 50 and graph["dampeml.registry.models"]  # the walk found the package
    circles = _circles(graph)
    for c in circles:
        print(" <-> ".join(c), {m: sorted(graph[m] & set(c)) for m in c})
    assert circles == []


#: what a module may import inside a function instead of at its top: the heavy optional libraries
#: (seconds to import, or absent where only part of the platform runs), and the package's modules
#: that load them at their top. The command line (`dampeml.cli`) imports lazily whatever it can:
#: `dampeml --help` must not load the platform.
HEAVY = {"tensorflow", "tf_keras", "keras", "ray", "mlflow", "matplotlib", "onnxruntime", "tf2onnx", "onnx"}
HEAVY |= {"torch", "scipy", "boto3"}


def _top_level_targets(tree: ast.Module, files: dict[str, Path]) -> set[str]:
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            out |= {s for s in subs if s in files} or {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_imports_inside_functions_are_only_the_heavy_ones():
    files = {}
    for f in (ROOT / "dampeml").rglob("*.py"):
        files[".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = f
    trees = {name: ast.parse(f.read_text()) for name, f in files.items()}
    top = {name: _top_level_targets(tree, files) for name, tree in trees.items()}

    def loads(module: str, seen: set[str]) -> set[str]:
        """The external top-level packages that importing `module` loads."""
        if module in seen:
            return set()
        seen.add(module)
        if module not in files:
            return {module.split(".")[0]}
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        return set().union(*(loads(t, seen) for t in [*parents, *top[module]]))

    lazy = []
    for name, tree in trees.items():
        if name.startswith("dampeml.cli"):
            continue
        lines = files[name].read_text().splitlines()
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        targets = _top_level_targets(ast.Module(body=[node], type_ignores=[]), files)
                        heavy = set().union(*(loads(t, set()) for t in targets)) & HEAVY
                        if not heavy and "#" not in lines[node.lineno - 1]:
                            lazy.append(f"{files[name].relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    print("\n".join(lazy))
    assert not lazy, "import these at the module's top (or say on the line why not)"
