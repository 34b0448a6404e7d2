"""The dependency rules of ``shared/design.md``, checked on the source: who may import whom.

* ``hw`` imports nothing of ours (it is the OS and the radio, behind small interfaces);
* the protocol package ``relay.protocol`` imports nothing of ours outside itself (the
  relay, the beacon, the client and the admin tools all speak it);
* ``relay`` never imports ``hw``, ``beacon``, ``client`` or ``btogether``;
* ``beacon`` and ``client`` never import each other;
* inside ``relay``, each part imports only the parts below it (:data:`RELAY_PARTS`: the
  command lines, the websocket shell, the composition root, the web side, administration,
  storage, the domain, the protocol), and there are no import cycles;
* the pure cores (``beacon.core``, ``client.core``: decisions without I/O, tested with
  explicit inputs and time) import no asyncio, socket, TLS, websocket, D-Bus or radio
  library, and neither does any module of ours they import.

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
PURE_CORES = ("beacon.core", "client.core")
# The relay's parts (``relay/__init__.py`` draws them) and the parts each may import; a
# module of a part may always import its own part. ``relay`` itself (an empty package)
# may be imported by anyone.
RELAY_PARTS: dict[str, tuple[str, ...]] = {
    "relay.protocol": (),
    "relay.domain": ("relay.protocol",),
    "relay.storage": ("relay.domain", "relay.protocol"),
    "relay.admin": ("relay.domain", "relay.protocol"),
    "relay.web": ("relay.admin", "relay.storage", "relay.domain", "relay.protocol"),
    "relay.files": (),
    "relay.config": ("relay.files",),
    "relay.node": (
        "relay.config",
        "relay.web",
        "relay.admin",
        "relay.storage",
        "relay.domain",
        "relay.protocol",
    ),
    "relay.net": ("relay.node", "relay.config", "relay.domain", "relay.protocol"),
    "relay.cli": (
        "relay.net",
        "relay.node",
        "relay.config",
        "relay.files",
        "relay.web",
        "relay.admin",
        "relay.storage",
        "relay.domain",
        "relay.protocol",
    ),
}
IO_LIBRARIES = (
    "asyncio",
    "socket",
    "ssl",
    "websockets",
    "dbus_fast",
    "bleak",
    "pystray",
    "pulsectl",
)


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (as far as it names one of ours)
    line: int
    at_import: bool = True  # run when the module is imported (not inside a function)


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


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int, bool]]:
    """(target, line, whether it runs at import time) for every import in ``tree``."""
    stack: list[tuple[ast.AST, bool]] = [(tree, True)]
    while stack:
        node, at_import = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend((child, at_import) for child in node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, at_import
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target, node.lineno, at_import
            for alias in node.names:  # `from relay import admin_endpoint` names a module
                yield f"{target}.{alias.name}", node.lineno, at_import
        body_runs_later = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend(
            (child, at_import and not body_runs_later) for child in ast.iter_child_nodes(node)
        )


def read_all_imports(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of ours under ``root`` and everything each imports, ours or not."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    found: list[Import] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for target, line, at_import in _imports(tree, module, path.name == "__init__.py"):
            found.append(Import(module, target, line, at_import))
    return set(modules), found


def read_imports(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of ours under ``root`` and every import between them."""
    modules, every = read_all_imports(root)
    ours = [i for i in every if i.target.split(".")[0] in PACKAGES and i.target in modules]
    return modules, ours


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def relay_part(module: str) -> str | None:
    """The part of the relay (a key of :data:`RELAY_PARTS`) a module belongs to."""
    return next((part for part in RELAY_PARTS if _within(module, part)), None)


def _relay_parts_broken(source: str, target: str) -> str | None:
    """Why ``source`` may not import ``target`` (both the relay's), or None if it may."""
    if target == "relay" or not (_within(source, "relay") and _within(target, "relay")):
        return None
    mine, theirs = relay_part(source), relay_part(target)
    if mine is None or theirs is None:
        missing = source if mine is None else target
        return f"{missing} belongs to no part of the relay (add it to RELAY_PARTS)"
    if mine == theirs or theirs in RELAY_PARTS[mine]:
        return None
    allowed = ", ".join(RELAY_PARTS[mine]) or "nothing else of the relay"
    return f"{mine} may import only {allowed}"


def violations(root: Path) -> list[str]:
    modules, every = read_all_imports(root)
    imports = [i for i in every if i.target.split(".")[0] in PACKAGES and i.target in modules]
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
        broken = _relay_parts_broken(source, target)
        if broken is not None and not _within(source, "relay.protocol"):
            rule(imp, broken)
    cycles = relay_cycles(modules, imports)
    out += [f"import cycle in relay: {' -> '.join(cycle)}" for cycle in cycles]
    return out + impure_imports(modules, every)


def _packages_of(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def impure_imports(modules: set[str], every: list[Import]) -> list[str]:
    """I/O libraries a pure core imports: itself (anywhere in it), or a module of ours that
    importing the core runs (its import-time imports, transitively)."""
    by_module: dict[str, list[Import]] = {}
    for imp in every:
        by_module.setdefault(imp.module, []).append(imp)
    out: list[str] = []
    for core in PURE_CORES:
        if core not in modules:
            continue
        via: dict[str, str | None] = {core: None}  # how each module was reached
        queue = [core]
        reported: set[tuple[str, int]] = set()
        while queue:
            module = queue.pop(0)
            for imp in by_module.get(module, []):
                if module != core and not imp.at_import:
                    continue
                if imp.target.split(".")[0] in IO_LIBRARIES:
                    if (imp.module, imp.line) in reported:
                        continue  # `from x import a, b` is one import
                    reported.add((imp.module, imp.line))
                    chain = []
                    step: str | None = module
                    while step is not None:
                        chain.append(step)
                        step = via[step]
                    why = f"{core} is a pure core: no I/O library, directly or through"
                    path = " <- ".join(chain)
                    out.append(f"{imp.module}:{imp.line} imports {imp.target}: {why} ({path})")
                    continue
                for target in [*_packages_of(imp.target), imp.target]:
                    if target in modules and target not in via:
                        via[target] = module
                        queue.append(target)
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
    print(
        "import rules: hw, relay.protocol, relay (and its parts), beacon and client keep to "
        "their lanes; "
        "the pure cores import no I/O"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
