"""Every import in gradlab/ keeps to DESIGN.md's layers: a module imports only from its own layer or
the layers below it. Imports inside functions count (they are imports), and so do
importlib.import_module calls with a literal module name (or an f-string's literal prefix)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gradlab"

# DESIGN.md's layers, top to bottom: (layer, the modules and packages in it).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("gradlab.cli",)),
    ("bench", ("gradlab.bench",)),
    ("torch", ("gradlab.torch",)),
    ("reproduce", ("gradlab.reproduce",)),
    ("report, plots", ("gradlab.report", "gradlab.plots")),
    ("sweep", ("gradlab.sweep",)),
    ("train", ("gradlab.train", "gradlab.ensemble", "gradlab.schema")),
    ("probes, theory, diagnose", ("gradlab.probes", "gradlab.theory", "gradlab.diagnose")),
    ("tasks", ("gradlab.tasks",)),
    ("nn", ("gradlab.nn",)),
    ("process-wide settings", ("gradlab._process",)),  # below nn: importable by all
)
# Outside the layers: the package itself (its __init__: version, location, re-exports) and `python -m gradlab`.
EXEMPT = ("gradlab", "gradlab.__main__")


def module_name(path: Path) -> str:
    """gradlab/sweep/store.py -> gradlab.sweep.store; gradlab/sweep/__init__.py -> gradlab.sweep."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in LAYERS (0 = top) of the layer a gradlab module belongs to."""
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of DESIGN.md: add it to LAYERS in tests/test_layers.py")


def _resolve(node: ast.ImportFrom, importer: str) -> str:
    """The absolute module an ImportFrom reads from (relative imports resolved against the importer)."""
    if not node.level:
        return node.module or ""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _import_module_target(node: ast.Call) -> str | None:
    """The module of importlib.import_module("gradlab.x") or f"gradlab.x.{name}" (its literal prefix's package)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rpartition(".")[0]
    return None


def imports(importer: str) -> list[tuple[int, str]]:
    """(line, gradlab module) for every import of a gradlab module in the importer, lazy ones included.
    `from gradlab.x import y` imports gradlab.x.y when that is a module, else gradlab.x."""
    found = []
    for node in ast.walk(ast.parse(MODULES[importer].read_text(), str(MODULES[importer]))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, importer)
            found += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base) for a in node.names]
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)):
            found.append((node.lineno, target))
    return [(line, m) for line, m in found if m == "gradlab" or m.startswith("gradlab.")]


@pytest.mark.parametrize("importer", [m for m in MODULES if m not in EXEMPT])
def test_a_module_imports_only_its_own_layer_or_below(importer):
    own = layer_of(importer)
    bad = [
        f"{importer} ({LAYERS[own][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]}) at line {line}"
        for line, imported in imports(importer)
        if imported not in EXEMPT and layer_of(imported) < own
    ]
    assert not bad, "imports from a layer above (DESIGN.md, Layers):\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_dynamic_imports():
    """The checker's own check: train's lazy import would be caught, the plots' import_module is seen."""
    assert (LAYERS[layer_of("gradlab.train")][0], LAYERS[layer_of("gradlab.sweep.store")][0]) == ("train", "sweep")
    assert any(m == "gradlab.plots" for _, m in imports("gradlab.plots.draw"))  # import_module(f"gradlab.plots.{name}")
    assert any(m == "gradlab.sweep.store" for _, m in imports("gradlab"))  # load()'s lazy import, inside a function
