"""The package's floors, checked: every import (module level or inside a function) goes down
a floor or stays on its own, and no two modules import each other, directly or around a
circle. ``docs/architecture.md`` describes these floors; this test is what holds them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raymix"

#: bottom to top; a module's floor is that of its longest listed prefix
FLOORS: tuple[tuple[str, ...], ...] = (
    ("raymix.errors", "raymix.files", "raymix.lock"),  # foundation
    ("raymix.solvers", "raymix.metrics"),  # maths: numpy, scipy, numba
    ("raymix.data", "raymix.deep", "raymix.storage"),  # formats; deep model; the one I/O layer
    ("raymix.datasets",),  # movieLens, synthetic data
    ("raymix.recipe",),  # the recipe: frozen pydantic specs, loaders
    ("raymix.coordinates",),  # the protocol and each coordinate kind, Ray-free
    ("raymix.engine",),  # everything that touches Ray
    ("raymix.descent", "raymix.checkpoint"),  # the coordinate-descent loop and its state
    (  # the application: run, outputs, scoring, tuning, clusters, the command line
        "raymix.run",
        "raymix.result",
        "raymix.outputs",
        "raymix.report",
        "raymix.report_page",
        "raymix.scoring",
        "raymix.scoring_command",
        "raymix.photon_scoring",
        "raymix.tracking",
        "raymix.api",
        "raymix.tune",
        "raymix.k8s",
        "raymix.console",
        "raymix.example",
        "raymix.cli",
        "raymix.__main__",
        "raymix",  # the public surface (raymix/__init__.py)
    ),
)
#: third-party packages allowed from a floor up (by its index in FLOORS)
ALLOWED_FROM = {"ray": 6, "horovod": 6}

#: violations not mended yet (issue 15 removes them one by one): the test fails on a new one
#: and on one that is gone but still listed, so this list only ever shrinks
KNOWN: set[str] = set()


def check(what: str, found: list[str]) -> None:
    """``found`` holds no violation but the known ones, and every known one of its kind."""
    kind = {line.split("|")[1] for line in KNOWN if line.startswith(what + "|")}
    new = sorted(set(found) - kind)
    mended = sorted(kind - set(found))
    assert not new, f"{what}:\n" + "\n".join(new)
    assert not mended, f"mended, remove from KNOWN in {__file__}:\n" + "\n".join(mended)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(name: str) -> int:
    best, floor = -1, None
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    if floor is None:
        raise AssertionError(f"{name} is on no floor: add it to FLOORS and docs/architecture.md")
    return floor


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file, resolved to raymix modules or to
    third-party top-level packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # "from raymix.data import rows" imports a module
                sub = f"{module}.{alias.name}"
                found.append((sub if sub in known else module, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: {m for m, _ in imports(path, name, known) if m in known and m != name}
        for name, path in mods.items()
    }


def test_every_module_has_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_goes_up_a_floor():
    mods = modules()
    known = set(mods)
    wrong = []
    for name, path in mods.items():
        mine = floor_of(name)
        for imported, _line in imports(path, name, known):
            top = imported.split(".")[0]
            if imported in known:
                if floor_of(imported) > mine:
                    wrong.append(f"{name} -> {imported}")
            elif top in ALLOWED_FROM and mine < ALLOWED_FROM[top]:
                wrong.append(f"{name} -> {top}")
    check("imports that go up a floor", sorted(set(wrong)))


def test_no_import_cycle():
    edges = graph()
    seen: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(edges[node]):
            if seen.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for node in sorted(edges):
        if node not in seen:
            visit(node, [node])
    # a package's __init__ re-exporting its modules is not a cycle of ideas
    cycles = [
        c for c in cycles if not all(p.startswith(c.split(" -> ")[0]) for p in c.split(" -> "))
    ]
    check("import cycles", cycles)


def test_no_private_name_is_imported_across_modules():
    wrong = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("raymix"):
                wrong += [
                    f"{module_name(path)}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_") and alias.name != "__version__"
                ]
    check("private names imported from another module", wrong)


@pytest.mark.parametrize("limit", [500])
def test_no_module_is_over_the_size_limit(limit):
    big = [name for name, path in modules().items() if len(path.read_text().splitlines()) > limit]
    check(f"modules over {limit} lines", big)
