"""The package's layers (DESIGN.md, "Layers"): an import may only point down, there are no import cycles,
and no package module imports another inside a function body (an optional third-party dependency may
be imported where it is used). The rules are checked on the source with ``ast``, so a new upward import
fails here before it can make a cycle at run time."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "tutorfinetune"

#: lowest first; a module may import modules of its own layer or below. Sub-packages are listed by their
#: first component (``engine`` covers ``engine.loop``, ``engine.record`` ...).
LAYERS = [
    ["_version", "config", "errors", "env", "distributed", "progress", "results"],
    ["data", "synthetic", "heads", "backbones"],
    ["mlm", "fisher", "diffs"],
    ["methods"],
    ["engine"],
    ["recipes", "hf"],
    ["studies"],
    ["analysis", "notebook", "reference", "exercises"],
    ["cli", "__main__", "__init__"],
]
#: deprecated aliases of moved modules (tutorfinetune._compat): they point wherever the module went
ALIASES = {"_compat", "study", "sweeps", "leaderboard", "sparse", "stilts", "madx", "sublayer_fisher"}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"tutorfinetune.{module} is in no layer: add it to LAYERS in tests/test_layers.py "
                         "(and to DESIGN.md's layer list).")


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        name = ".".join(parts)
        if name.split(".")[0] not in ALIASES:
            out[name] = f
    return out


def package_imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function?) for every import of a tutorfinetune module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    funcs = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                mod = ".".join([*base, node.module] if node.module else base)
                if node.module is None:  # from . import a, b
                    targets = [f"{mod}.{a.name}".strip(".") for a in node.names]
                else:
                    targets = [mod]
            elif node.module and node.module.split(".")[0] == "tutorfinetune":
                targets = [node.module.partition(".")[2] or "__init__"]
        elif isinstance(node, ast.Import):
            targets = [a.name.partition(".")[2] or "__init__" for a in node.names
                       if a.name.split(".")[0] == "tutorfinetune"]
        for t in targets:
            if t and t != "__init__":
                out.append((t, node.lineno, id(node) in funcs))
    return out


def _where(path: Path) -> str:
    try:
        return str(path.relative_to(PKG.parent))
    except ValueError:  # a module planted by a test, outside the package
        return str(path)


def violations(mods: dict[str, Path]) -> list[str]:
    bad = []
    for name, path in mods.items():
        mine = layer_of(name)
        for target, line, in_function in package_imports(name, path):
            top = target.split(".")[0]
            if top in ALIASES:
                bad.append(f"{_where(path)}:{line} imports the deprecated alias tutorfinetune.{target}")
                continue
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{_where(path)}:{line} imports tutorfinetune.{target} "
                           f"(layer {theirs}) from layer {mine}: an upward import")
            if in_function:
                bad.append(f"{_where(path)}:{line} imports tutorfinetune.{target} inside a "
                           "function: import it at the top of the module")
    return bad


def cycles(mods: dict[str, Path]) -> list[list[str]]:
    graph = {n: sorted({t for t, _, f in package_imports(n, p) if not f and t in mods}) for n, p in mods.items()}
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if m in stack and not (m == n):
                # a package importing its own submodules (``from . import x``) is not a cycle
                if not (n.startswith(m + ".") or m.startswith(n + ".")):
                    found.append(stack[stack.index(m):] + [m])
            elif state.get(m) is None:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in graph:
        if state.get(n) is None:
            visit(n, [])
    return found


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_imports_point_down_and_not_inside_functions():
    bad = violations(modules())
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    found = cycles(modules())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    """The checker is not a rubber stamp: a data-layer module importing the engine fails it."""
    fake = tmp_path / "data.py"
    fake.write_text("from .engine import train\n\ndef f():\n    from .backbones import load_backbone\n")
    bad = violations({"data": fake})
    assert any("upward import" in b and "tutorfinetune.engine" in b for b in bad)
    assert any("inside a function" in b for b in bad)


def test_a_cycle_is_caught(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from .b import x\n")
    b.write_text("from .a import y\n")
    assert cycles({"a": a, "b": b})


@pytest.mark.parametrize("old", ["study", "sweeps", "leaderboard", "sparse", "stilts", "madx", "sublayer_fisher"])
def test_old_paths_still_work_with_a_deprecation_warning(old):
    import importlib
    import sys

    import tutorfinetune as tft

    sys.modules.pop(f"tutorfinetune.{old}", None)
    with pytest.warns(DeprecationWarning, match="0.3"):
        mod = importlib.import_module(f"tutorfinetune.{old}")
    expected = {"study": "sweep", "sweeps": "notebook_sweep", "leaderboard": "run_leaderboard",
                "sparse": "SparseDiff", "stilts": "FromIntermediate", "madx": "domain_transfer",
                "sublayer_fisher": "sublayer_scores"}[old]
    assert hasattr(mod, expected)
    assert getattr(tft, old) is sys.modules[f"tutorfinetune.{old}"]
