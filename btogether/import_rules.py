"""The dependency rules of ``shared/design.md``, checked on the source: who may import whom.

* ``hw`` imports nothing of ours (it is the OS and the radio, behind small interfaces);
* the protocol package ``relay.protocol`` imports nothing of ours outside itself (the
  relay, the beacon, the client and the admin tools all speak it);
* ``relay`` never imports ``hw``, ``beacon``, ``client`` or ``btogether``;
* ``beacon`` and ``client`` never import each other;
* there are no import cycles inside ``relay``.

Imports are read from the syntax tree of every module (at any depth, so an import
inside a function counts), except those under ``if TYPE_CHECKING:``, which exist for
the type checker only. ``python -m btogether.import_rules`` prints every violation and
exits 1 if there is one; ``./dev.sh test`` runs it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("hw", "relay", "beacon", "client", "btogether")
RELAY_NEVER_IMPORTS = ("hw", "beacon", "client", "btogether")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (as far as it names one of ours)
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from relay import admin_endpoint` names a module
                yield f"{target}.{alias.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def read_imports(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of ours under ``root`` and every import between them."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    found: list[Import] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for target, line in _imports(tree, module, path.name == "__init__.py"):
            if target.split(".")[0] in PACKAGES and target in modules:
                found.append(Import(module, target, line))
    return set(modules), found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(root: Path) -> list[str]:
    modules, imports = read_imports(root)
    out: list[str] = []

    def rule(imp: Import, why: str) -> None:
        out.append(f"{imp.module}:{imp.line} imports {imp.target}: {why}")

    for imp in imports:
        source, target = imp.module, imp.target
        if _within(source, "hw") and not _within(target, "hw"):
            rule(imp, "hw imports nothing of ours")
        if _within(source, "relay.protocol") and not _within(target, "relay.protocol"):
            rule(imp, "the protocol package imports nothing of ours outside itself")
        if _within(source, "relay") and target.split(".")[0] in RELAY_NEVER_IMPORTS:
            rule(imp, "relay never imports hw, beacon, client or btogether")
        if _within(source, "beacon") and _within(target, "client"):
            rule(imp, "beacon and client never import each other")
        if _within(source, "client") and _within(target, "beacon"):
            rule(imp, "beacon and client never import each other")
    cycles = relay_cycles(modules, imports)
    out += [f"import cycle in relay: {' -> '.join(cycle)}" for cycle in cycles]
    return out


def relay_cycles(modules: set[str], imports: list[Import]) -> list[list[str]]:
    """Cycles among relay's modules (a package counts as its ``__init__``)."""
    graph: dict[str, set[str]] = {m: set() for m in modules if _within(m, "relay")}
    for imp in imports:
        if imp.module in graph and imp.target in graph and imp.module != imp.target:
            # `from relay import x` also names the package; a package importing its own
            # child is not a cycle through the package.
            if _within(imp.module, imp.target) and imp.module != imp.target:
                continue
            graph[imp.module].add(imp.target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    found = violations(root)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import rule violations (see btogether/import_rules.py)")
        return 1
    print("import rules: hw, relay.protocol, relay, beacon and client keep to their lanes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
