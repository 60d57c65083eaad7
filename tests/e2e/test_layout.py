"""The layers of the package: imports flow one way, the views read results only through the
atlas, and only the atlas touches its sections. Read from the source (every import, also those
inside functions), so a test fails where a module reaches the wrong way."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "notebookcarto"
# what each layer may import (besides itself and ``files``, the one way files are written,
# which every layer may use); None: anything
MAY_IMPORT = {
    "files": set(),
    "capture": set(),
    "datasets": set(),
    "stats": {"capture", "datasets"},
    "analyses": {"capture", "datasets", "stats"},
    "explain": {"capture", "datasets", "stats", "analyses"},
    "featvis": {"capture", "datasets", "stats", "analyses"},
    "atlas": {"capture", "datasets", "stats", "analyses"},
    # a snapshot is an atlas of the stats pass with the analyses' results attached
    "monitor": {"capture", "datasets", "stats", "analyses", "atlas"},
    "views": {"atlas"},
    "models": {"datasets"},
    "testing": None, "demo": None, "cli": None, "__main__": None, "__init__": None,
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE).parts


def runtime_nodes(tree):
    """Every node, less the ``if TYPE_CHECKING:`` blocks (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_packages(path: Path, parts) -> set[str]:
    """The top-level notebookcarto packages a module imports at run time (relative or
    absolute)."""
    out = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-1])[: len(parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x": the package root's names
                    target = [alias.name for alias in node.names][:1]
            elif (node.module or "").startswith("notebookcarto"):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                out.add(target[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("notebookcarto."):
                    out.add(alias.name.split(".")[1])
    return out


def layer_of(parts) -> str:
    return parts[0].removesuffix(".py")


@pytest.mark.parametrize("path, parts", list(modules()), ids=lambda v: str(v)[-40:])
def test_imports_flow_one_way(path, parts):
    layer = layer_of(parts)
    allowed = MAY_IMPORT[layer]
    if allowed is None:
        return
    reached = imported_packages(path, parts) - {layer, "__version__", "files"}
    if layer == "atlas":  # the facade methods atlas.show() / to_html() hand over to the views
        reached -= {"views"} if path.name == "atlas.py" else set()
    assert reached <= allowed, f"{'/'.join(parts)} imports {sorted(reached - allowed)}"


def test_views_import_nothing_from_the_analyses():
    for path, parts in modules():
        if parts[0] == "views":
            assert "analyses" not in imported_packages(path, parts), path.name


def test_only_the_atlas_reads_its_sections():
    """``atlas.sections`` does not exist any more and no module outside atlas/ reaches into the
    atlas's stored results (``_results``, ``_unread``)."""
    for path, parts in modules():
        if parts[0] == "atlas":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("sections", "_results", "_unread"), \
                    f"{'/'.join(parts)}:{node.lineno} reads .{node.attr}"


@pytest.mark.parametrize("path, parts", [m for m in modules() if m[1][-1] != "__main__.py"],
                         ids=lambda v: str(v)[-40:])
def test_every_module_says_what_it_exports(path, parts):
    import importlib

    name = ".".join(["notebookcarto", *parts]).removesuffix(".py").removesuffix(".__init__")
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which it lacks"
