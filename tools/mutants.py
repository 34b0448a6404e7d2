"""Mutation testing of the relay's decisions: ``./dev.sh mutants``.

Runs mutmut (3.x) over the decision modules named in ``[tool.mutmut]`` of
``pyproject.toml`` against the fast tests named there (the domain layer,
``tests/domain``, and the pure units), then prints the score, how many mutants ran,
and every survivor. mutmut's own mutations flip comparisons, ``and``/``or``,
``is``/``is not``, ``in``/``not in``, drop ``not``, change constants and strings, and
replace arguments and assignments with ``None``; it never deletes a statement. So
this command adds the mutation the project cares most about: **a check removed**.
For every ``if`` (and comprehension filter) in those modules it makes a mutant whose
condition is ``False`` (the branch never taken: a refusal gone) and one per operand
of an ``and``/``or`` condition with that operand left out (one clause of a check
gone, e.g. the tenant half of ``device is None or device.tenant_id != tenant``).

Only checks are mutated: every mutant changes a condition — the test of an
``if``/``elif``/``while``/``assert``, a comprehension filter, a comparison, ``and``/``or``,
``not`` or a conditional expression, wherever it stands (``more = len(rows) > limit``
too). Messages, log fields and arithmetic outside conditions are left alone: about
5,400 mutants of every kind against about 1,200 of checks, which is what fits in 15
minutes on two cores.

Every survivor fails the command unless ``tools/mutants-equivalent.toml`` lists it with
the reason it cannot change what the relay does (an equivalent mutant). Entries name
the function and the changed line, not mutmut's numbering, so they survive unrelated
edits; an entry that no longer matches a survivor is reported as stale.

Usage: ``./dev.sh mutants [--jobs N] [--resume] [--list-killed]``. A full run starts
from a fresh ``mutants/`` directory (mutmut's working copy; ignored by git);
``--resume`` keeps mutmut's results and re-tests only what changed.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402 - the header every benchmark prints

EQUIVALENTS = ROOT / "tools" / "mutants-equivalent.toml"
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


# --- the check-removal operator ----------------------------------------------------------
def _operands(
    test: cst.BaseExpression, operator: type[cst.BaseBooleanOp]
) -> list[cst.BaseExpression]:
    """The operands of a chain of one boolean operator (``a or b or c`` -> [a, b, c])."""
    if (
        isinstance(test, cst.BooleanOperation)
        and isinstance(test.operator, operator)
        and not test.lpar
    ):
        return _operands(test.left, operator) + _operands(test.right, operator)
    return [test]


def _joined(
    operands: list[cst.BaseExpression], operator: type[cst.BaseBooleanOp]
) -> cst.BaseExpression:
    result = operands[0]
    for operand in operands[1:]:
        result = cst.BooleanOperation(left=result, operator=operator(), right=operand)
    return result


def _without_each_operand(test: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    if not isinstance(test, cst.BooleanOperation) or test.lpar:
        return
    operator = type(test.operator)
    operands = _operands(test, operator)
    for index in range(len(operands)):
        rest = operands[:index] + operands[index + 1 :]
        yield _joined(rest, operator)


def operator_remove_check(node: cst.If) -> Iterable[cst.If]:
    """``if check: ...`` -> ``if False: ...``, and each clause of the check left out."""
    yield node.with_changes(test=cst.Name("False"))
    for test in _without_each_operand(node.test):
        yield node.with_changes(test=test)


def operator_remove_filter(node: cst.CompIf) -> Iterable[cst.CompIf]:
    """``[x for x in xs if check]`` -> the filter always passes, or loses one clause."""
    yield node.with_changes(test=cst.Name("True"))
    for test in _without_each_operand(node.test):
        yield node.with_changes(test=test)


# --- only checks are mutated ----------------------------------------------------------------
# The nodes mutmut's visitor is inside, outermost first (kept by the patched visitor below).
_VISITING: list[cst.CSTNode] = []


def _is_check(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Comparison | cst.BooleanOperation | cst.IfExp) or (
        isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not)
    )


def in_check() -> bool:
    """Whether the node being mutated is part of a check: the test of an if/elif/while/assert,
    a comprehension filter, or any comparison, ``and``/``or``, ``not`` or conditional
    expression (a check assigned or returned, e.g. ``return text is not None and …``)."""
    if _VISITING and _is_check(_VISITING[-1]):
        return True
    for parent, child in itertools.pairwise(_VISITING):
        if isinstance(parent, cst.If | cst.While | cst.Assert) and parent.test is child:
            return True
        if isinstance(parent, cst.CompIf) or _is_check(parent):
            return True
    return False


def _gated(
    operator: Callable[[Any], Iterable[cst.CSTNode]],
) -> Callable[[Any], Iterable[cst.CSTNode]]:
    def checks_only(node: Any) -> Iterable[cst.CSTNode]:
        return operator(node) if in_check() else ()

    checks_only.__name__ = getattr(operator, "__name__", "operator")
    return checks_only


def install_operators() -> None:
    """Restrict mutmut's operators to checks, and add the check-removal operators.

    The decision modules hold about 5,400 mutants of every kind (most of them messages and
    log fields); their checks about a fifth of that, which two cores test in minutes."""
    from mutmut.mutation import mutators
    from mutmut.mutation.file_mutation import MutationVisitor

    operators = mutators.mutation_operators
    if any(op is operator_remove_check for _, op in operators):
        return
    operators[:] = [(kind, _gated(op)) for kind, op in operators]
    operators.append((cst.If, operator_remove_check))
    operators.append((cst.CompIf, operator_remove_filter))
    visit = MutationVisitor.on_visit

    def on_visit(self: MutationVisitor, node: cst.CSTNode) -> bool:
        _VISITING.append(node)
        return visit(self, node)

    def on_leave(self: MutationVisitor, original_node: cst.CSTNode) -> None:
        _VISITING.pop()

    MutationVisitor.on_visit = on_visit  # type: ignore[method-assign]
    MutationVisitor.on_leave = on_leave  # type: ignore[method-assign]
    _allow_marked_handlers()


def _is_marker(decorator: cst.Decorator) -> bool:
    """``@handles(...)`` (relay.domain.handlers): it only sets an attribute on the function."""
    call = decorator.decorator
    return (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Name)
        and call.func.value == "handles"
    )


def _allow_marked_handlers() -> None:
    """Mutate the request handlers too.

    mutmut leaves every decorated function alone (a decorator runs at definition time and
    may register the function). The relay's handlers carry ``@handles(...)``, which only
    marks the function; here they are mutated like any method: the trampoline keeps the
    mark (it is found by ``relay.domain.handlers.handlers_of``), the original's copy and the
    mutants lose it, so exactly one method answers each request type."""
    from mutmut.mutation import file_mutation

    skip = file_mutation.MutationVisitor._skip_node_and_children

    def skip_unless_marked(self: Any, node: cst.CSTNode) -> bool:
        if (
            isinstance(node, cst.FunctionDef)
            and node.decorators
            and all(_is_marker(d) for d in node.decorators)
        ):
            return False
        return bool(skip(self, node))

    arrange = file_mutation.function_trampoline_arrangement

    def arrangement(function: cst.FunctionDef, mutants: Any, class_name: str | None) -> Any:
        declarations, methods, assignments, names = arrange(function, mutants, class_name)
        unmarked = [
            m.with_changes(decorators=[d for d in m.decorators if not _is_marker(d)])
            if isinstance(m, cst.FunctionDef)
            else m
            for m in methods[1:]
        ]
        return declarations, [methods[0], *unmarked], assignments, names

    file_mutation.MutationVisitor._skip_node_and_children = skip_unless_marked  # type: ignore[method-assign]
    file_mutation.function_trampoline_arrangement = arrangement


# --- reading mutmut's results ------------------------------------------------------------------
@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's: module.function__mutmut_N
    path: Path
    status: str
    function: str  # module.Class.method
    before: str  # the changed lines, as in the source
    after: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.function, self.before, self.after)


def _function_name(mutant_name: str) -> str:
    from mutmut.mutation.trampoline_templates import CLASS_NAME_SEPARATOR

    module, _, rest = mutant_name.rpartition(".")
    rest = rest.partition("__mutmut_")[0]
    if rest.startswith("x_"):
        return f"{module}.{rest[2:]}"
    _, cls, method = rest.split(CLASS_NAME_SEPARATOR)
    return f"{module}.{cls}.{method}"


def describe(name: str, path: Path, status: str) -> Mutant:
    from mutmut.mutation.diff_apply import (
        read_functions_from_index,
        read_mutant_function,
        read_mutants_module,
        read_original_function,
    )

    functions = read_functions_from_index(name, path)
    if functions is None:
        module = read_mutants_module(path)
        functions = (read_original_function(module, name), read_mutant_function(module, name))
    before_code, after_code = (cst.Module(body=[f]).code.strip("\n") for f in functions)
    before_lines, after_lines = before_code.split("\n"), after_code.split("\n")
    changed_before: list[int] = []
    changed_after: list[int] = []
    matcher = difflib.SequenceMatcher(a=before_lines, b=after_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            changed_before += range(i1, i2)
            changed_after += range(j1, j2)
    return Mutant(
        name=name,
        path=path,
        status=status,
        function=_function_name(name),
        before=" / ".join(before_lines[i].strip() for i in changed_before),
        after=" / ".join(after_lines[j].strip() for j in changed_after),
    )


def results() -> list[Mutant]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    found: list[Mutant] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            if status in KILLED:
                found.append(Mutant(name, path, status, _function_name(name), "", ""))
            else:
                found.append(describe(name, path, status))
    return found


def load_equivalents() -> dict[tuple[str, str, str], str]:
    data = tomllib.loads(EQUIVALENTS.read_text())
    return {
        (e["function"], e["before"], e["after"]): e["reason"] for e in data.get("equivalent", [])
    }


# --- the command -------------------------------------------------------------------------------
def run_mutmut(jobs: int) -> None:
    install_operators()
    from mutmut.__main__ import cli

    try:
        cli.main(
            args=["run", "--max-children", str(jobs)], prog_name="mutmut", standalone_mode=False
        )
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def report(mutants: list[Mutant], seconds: float, list_killed: bool) -> int:
    equivalents = load_equivalents()
    survivors = [m for m in mutants if m.status not in KILLED]
    killed = [m for m in mutants if m.status in KILLED]
    equivalent = [m for m in survivors if m.key in equivalents]
    unlisted = [m for m in survivors if m.key not in equivalents]
    failing = unlisted
    scored = len(mutants) - len(equivalent)
    score = 100.0 * len(killed) / scored if scored else 100.0
    by_file: dict[Path, list[Mutant]] = {}
    for m in mutants:
        by_file.setdefault(m.path, []).append(m)

    print()
    print(f"mutation testing of the relay's decisions, {machine()}")
    print(f"{'module':<28} {'mutants':>8} {'killed':>7} {'equivalent':>11} {'survived':>9}")
    for path, ms in sorted(by_file.items()):
        k = sum(m.status in KILLED for m in ms)
        e = sum(m in equivalent for m in ms)
        print(f"{path!s:<28} {len(ms):>8} {k:>7} {e:>11} {len(ms) - k - e:>9}")
    print(
        f"{len(mutants)} mutants run in {seconds:.0f} s: {len(killed)} killed, {len(equivalent)} "
        f"equivalent (listed in {EQUIVALENTS.relative_to(ROOT)}), {len(unlisted)} survived; "
        f"score {score:.1f} % (killed / non-equivalent)"
    )
    if list_killed:
        for m in killed:
            print(f"  killed  {m.name}")
    stale = set(equivalents) - {m.key for m in equivalent}
    if stale:
        print(
            f"\n{len(stale)} entries of {EQUIVALENTS.name} match no survivor (stale; remove them):"
        )
        for function, before, after in sorted(stale):
            print(f"  {function}: {before!r} -> {after!r}")
    if failing:
        print(f"\nFAIL: {len(failing)} surviving mutants remove or invert a check:")
        for m in failing:
            print(f"  {m.status:<9} {m.function}: {m.before!r} -> {m.after!r}   ({m.name})")
        print("Write the test that kills each, or list it in the equivalents file with the reason.")
        return 1
    print("\n0 surviving mutants: every removed or inverted check is caught by a test.")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 2, help="parallel mutant runs"
    )
    parser.add_argument("--resume", action="store_true", help="keep mutmut's earlier results")
    parser.add_argument("--list-killed", action="store_true", help="also list every killed mutant")
    parser.add_argument("--report-only", action="store_true", help="report the last run's results")
    args = parser.parse_args()
    os.chdir(ROOT)
    began = time.monotonic()
    if not args.report_only:
        if not args.resume:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        run_mutmut(args.jobs)
    return report(results(), time.monotonic() - began, args.list_killed)


if __name__ == "__main__":
    sys.exit(main())
