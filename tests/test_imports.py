"""The package's imports go one way: no cycles, lower layers never import higher ones, and imports
sit at the top of modules.

Every module of `yt8m` is read with `ast` (nothing is imported): each `import` / `from ... import`
anywhere in it (function bodies, `if TYPE_CHECKING:` blocks included) and each
`importlib.import_module("...")` with a literal name is an edge of the graph between yt8m modules.

Where an import may sit inside a function (ALLOWED_LOCAL_IMPORTS):
- `yt8m/app/*`: command bodies (and their helpers) import the library when the command runs, so
  that `yt8m --help` stays instant and free of TensorFlow;
- `yt8m/_tf.py`: `import_tensorflow_quietly()` itself, the one place TensorFlow is imported;
- `yt8m/__init__.py`: `__getattr__` loads `yt8m.api` on first use (PEP 562), so that `import yt8m`
  does not load TensorFlow;
- `yt8m/pca/__init__.py`: `__getattr__` loads `yt8m.pca.fit` (scikit-learn) on first use, so that
  extraction does not pay for it;
- DEFERRED_THIRD_PARTY: a heavy third-party module that only a rarely used function needs
  (named per file: scipy.signal for in-memory resampling, scikit-learn's k-means for quantizing),
  imported by that function so that `yt8m extract` / `yt8m classify` start without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "yt8m"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
ALLOWED_LOCAL_IMPORTS = ("yt8m/app/", "yt8m/_tf.py", "yt8m/__init__.py", "yt8m/pca/__init__.py")
DEFERRED_THIRD_PARTY = {
    ("yt8m/extractor/audio.py", "scipy.signal"),
    ("yt8m/classifier/compact/quantize.py", "sklearn.cluster"),
}
# Layers, bottom to top; a module may import its own layer and the ones below (never above).
LAYERS = [
    ("yt8m.core", "yt8m._tf"),
    ("yt8m.data", "yt8m.downloads", "yt8m.trust"),
    ("yt8m.pca",),
    ("yt8m.extractor", "yt8m.classifier"),
    ("yt8m.classification", "yt8m.api", "yt8m"),
    ("yt8m.app",),
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported yt8m module
    path: str  # file, relative to the repository
    line: int
    local: bool  # inside a function or class body


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of a dotted name that is a module of the package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str], path: str) -> None:
        self.module, self.is_package, self.modules, self.path = module, is_package, modules, path
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, name: str, node: ast.AST) -> None:
        target = _resolve(name, self.modules)
        if target is not None:
            self.found.append(Import(self.module, target, self.path, node.lineno, self.depth > 0))

    def _scoped(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: from the importing module's package
            base = self.module.split(".")
            base = base if self.is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        for alias in node.names:  # `from pkg import module` imports the submodule
            self._add(f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in self.modules else prefix, node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            self._add(str(node.args[0].value), node)
        self.generic_visit(node)


def collect_imports(root: Path) -> tuple[set[str], list[Import]]:
    """Every module under `root` (a package directory) and every import between them."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    found: list[Import] = []
    for path in files:
        relative = path.relative_to(root.parent).as_posix()
        collector = _Collector(module_name(path, root), path.name == "__init__.py", modules, relative)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return modules, found


def find_cycles(modules: set[str], imports: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for item in imports:
        graph[item.source].add(item.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def connect(start: str) -> None:  # Tarjan's algorithm, iteratively
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return cycles


def layer_of(module: str) -> int:
    best, rank = -1, None
    for position, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, rank = len(prefix), position
    assert rank is not None, f"{module}: not in any layer; add it to LAYERS"
    return rank


@pytest.fixture(scope="module")
def package() -> tuple[set[str], list[Import]]:
    return collect_imports(ROOT)


def test_the_whole_package_is_read(package):
    modules, imports = package
    files = {path for path in ROOT.rglob("*.py")}
    assert len(modules) == len(files) > 50
    for expected in ("yt8m", "yt8m.api", "yt8m.classifier.bundle", "yt8m.classifier.training", "yt8m.app.cli"):
        assert expected in modules
    sources = {item.source for item in imports}
    assert {"yt8m.classifier.training", "yt8m.api", "yt8m.app.train_cmd"} <= sources
    assert any(item.local for item in imports)  # function-local imports are seen too


def test_no_import_cycles(package):
    modules, imports = package
    cycles = find_cycles(modules, imports)
    details = []
    for cycle in cycles:
        members = set(cycle)
        edges = [f"{i.path}:{i.line} -> {i.target}" for i in imports if i.source in members and i.target in members]
        details.append(" <-> ".join(cycle) + "\n    " + "\n    ".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(details)


def test_lower_layers_never_import_higher_ones(package):
    _, imports = package
    upward = sorted({
        f"{i.path}:{i.line}: {i.source} imports {i.target}"
        for i in imports
        if layer_of(i.target) > layer_of(i.source)
    })
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_function_local_imports_only_where_allowed():
    """Any import (yt8m or third-party) inside a function body, outside ALLOWED_LOCAL_IMPORTS, fails."""
    local = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).as_posix()
        if relative.startswith(ALLOWED_LOCAL_IMPORTS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        local.append(f"{relative}:{node.lineno}: import {', '.join(a.name for a in node.names)}")
                    elif isinstance(node, ast.ImportFrom):
                        if node.level == 0 and (relative, node.module) in DEFERRED_THIRD_PARTY:
                            continue
                        local.append(f"{relative}:{node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
    shown = sorted(set(local))
    assert not shown, "function-local imports outside " + ", ".join(ALLOWED_LOCAL_IMPORTS) + ":\n" + "\n".join(shown)


def test_the_cycle_finder_finds_cycles(tmp_path):
    """The checks above can fail: a two-module cycle through a function-local import is reported."""
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg import b\n")
    (root / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    (root / "c.py").write_text("import importlib\nimportlib.import_module('pkg.c')\n")
    modules, imports = collect_imports(root)
    assert modules == {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    assert [i.local for i in imports if i.source == "pkg.b"] == [True]
    assert find_cycles(modules, imports) == [["pkg.a", "pkg.b"], ["pkg.c"]]


def _loaded_after(imports: str, modules: list[str]) -> list[str]:
    code = f"import sys, {imports}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [m for m in done.stdout.strip().split(",") if m]


def test_extract_and_classify_start_without_the_deferred_modules():
    """`yt8m extract`'s and `yt8m classify`'s modules load no scikit-learn / scipy.signal, nor does
    TensorFlow's import (Keras would import scikit-learn for its wrappers), and a classifier model
    builds without them."""
    deferred = sorted(module for _, module in DEFERRED_THIRD_PARTY) + ["sklearn"]
    assert _loaded_after("yt8m.extractor.job", deferred) == []
    assert _loaded_after("yt8m.classification", deferred) == []
    started = ("yt8m._tf; yt8m._tf.import_tensorflow_quietly(); from yt8m.classifier.bundle import build_model; "
               "from yt8m.classifier.config import ModelConfig; "
               "build_model(ModelConfig.create('NeXtVLADModel', num_classes=5))")
    assert _loaded_after(started, deferred) == []


def test_scikit_learn_still_imports_after_tensorflow():
    code = ("from yt8m._tf import import_tensorflow_quietly; import_tensorflow_quietly(); "
            "from sklearn.decomposition import PCA; import numpy as np; "
            "print(PCA(2).fit(np.random.default_rng(0).normal(size=(20, 4))).n_components_)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr[-2000:]
