"""The skill-program sandbox: checks and runs model-written code over the skills, without `exec`.

Public API (used by the Octopus planner and nothing else):

* `check_program(code) -> list[str]`: the violations ("line 3: imports are not allowed"), empty when
  the program is allowed.
* `run_program(code, skills, *, max_calls=50, timeout_s=10.0) -> ProgramResult`: check, then run
  `act(robot)` with `robot.<name>(...)` bound to `skills[name]`.

The language (a small subset of Python; anything not listed is a violation):

    def act(robot):                      # exactly one top-level function, one parameter, no
        '''optional docstring'''         #   decorators, defaults or annotations (a module
        target = "red cube"              #   docstring before it is allowed)
        if robot.locate(target):         # skills are called as robot.<skill>(...) only
            robot.pick(target)
        for name in ["a", "b"]:          # for over a list/tuple literal (<= 100 items), a local
            robot.navigate_to(name)      #   name holding one, or range(<int literals>) (<= 100 items)
        for i in range(3):
            robot.look_around()
        return True

Statements: expression statements, `name = expr`, `name += / -= / *= expr`, `if`/`elif`/`else`,
`for` (no `else`), `break`, `continue`, `pass`, `return`. Expressions: literals (None, bool, int
(|x| <= 1e9), float, str (<= 1000 characters)), local names, list/tuple literals (<= 100 items),
`and`/`or`/`not`, comparisons (incl. `in`, `is`), `+ - * / // %` on numbers (`+` also joins strings
and lists), unary `-`/`+`, `x if c else y`, `seq[int]`, and skill calls with positional or keyword
literal-name arguments. Rejected: imports, any other attribute access, every name starting with `_`
(dunders), calls of anything but skills (so `exec`, `eval`, `open`, `getattr`, `__import__`,
`globals`, `compile`, `print`... cannot even be named as functions), lambdas, comprehensions,
`while`, ranges that are not integer literals or longer than 100, f-strings and `%`/`.format`
formatting, decorators, classes, nested functions (hence no recursion), `global`/`nonlocal`, `try`,
`with`, `raise`, `del`, `assert`, walrus, `yield`/generators, `async`/`await`, dicts and sets,
star-arguments and slices.

Semantics. A skill call evaluates to True when the skill succeeded (a result with `success`, a
bool, or None for a callable that returns nothing) and False otherwise. A failed call whose value
the program ignores (an expression statement) stops the program there with `error_kind =
"skill_failure"`, the way an unchecked exception would; a program that tests the value
(`if not robot.pick(x): ...`) handles the failure itself. A skill that raises stops the program
(`"skill_exception"`); budgets stop it with `"call_budget"`, `"step_budget"` or `"timeout"`; a bad
operation (unknown name, 1 / 0, index out of range, a string over 10000 characters) with
`"runtime"`.

Why an interpreter and not `exec` or a subprocess: the program runs in `_Interpreter`, which walks
the already-checked AST and never compiles model text, so nothing the model writes reaches `exec`.
Every statement and expression it evaluates is one step: the step budget (`MAX_STEPS`) and the
wall-clock deadline (`timeout_s`) are checked at every step, so no loop (and there are only bounded
`for`s to begin with) can hang the planner; the call budget is checked before every skill call.
Skills have to run in-process (they drive the simulator or the robot's ROS clients), which a
subprocess with a hard kill would turn into an RPC layer; the interpreter needs none. The deadline
cannot interrupt a skill that is already running: each skill bounds its own duration (the
simulator's skills are finite; the ROS adapter's calls have timeouts) and the program stops at the
next step after the deadline.
"""
from __future__ import annotations

import ast
import math
import operator
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from vlm_agent.skills.api import SKILLS

MAX_CODE_CHARS = 20_000
MAX_NODES = 5_000  # AST nodes in a program
MAX_DEPTH = 40  # AST nesting depth (keeps the checker and the interpreter far from Python's recursion limit)
MAX_ITEMS = 100  # items of a list/tuple literal or a range a `for` may iterate
MAX_LITERAL_CHARS = 1_000
MAX_STRING_CHARS = 10_000  # strings built while running
MAX_INT = 10**9  # literal integers
MAX_RUNTIME_INT = 2**62
MAX_STEPS = 100_000  # evaluated statements + expressions per run

_BIN_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_AUG_OPS = (ast.Add, ast.Sub, ast.Mult)
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_REJECTED = {  # node type -> reason (clearer feedback than "not allowed")
    ast.Import: "imports are not allowed", ast.ImportFrom: "imports are not allowed",
    ast.Attribute: "attribute access is not allowed (call skills as robot.<skill>(...))",
    ast.Lambda: "lambdas are not allowed", ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed", ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed", ast.While: "while loops are not allowed (use for over a range)",
    ast.JoinedStr: "f-strings are not allowed", ast.FormattedValue: "f-strings are not allowed",
    ast.ClassDef: "classes are not allowed", ast.FunctionDef: "nested functions are not allowed",
    ast.AsyncFunctionDef: "async is not allowed", ast.AsyncFor: "async is not allowed", ast.AsyncWith: "async is not allowed",
    ast.Await: "await is not allowed", ast.Yield: "generators are not allowed", ast.YieldFrom: "generators are not allowed",
    ast.Global: "global is not allowed", ast.Nonlocal: "nonlocal is not allowed", ast.Try: "try is not allowed",
    ast.With: "with is not allowed", ast.Raise: "raise is not allowed", ast.Delete: "del is not allowed",
    ast.Assert: "assert is not allowed", ast.NamedExpr: "the walrus operator is not allowed",
    ast.Dict: "dicts are not allowed", ast.Set: "sets are not allowed", ast.Starred: "star-arguments are not allowed",
    ast.Slice: "slices are not allowed", ast.Pow: "** is not allowed",
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _REJECTED[ast.TryStar] = "try is not allowed"
if hasattr(ast, "Match"):
    _REJECTED[ast.Match] = "match is not allowed"


@dataclass
class CallRecord:
    """One skill call: name, argument values, outcome (`success`, `feedback`) and the skill's raw
    return value (`result`, e.g. a `SkillResult`)."""

    name: str
    args: tuple
    kwargs: dict
    success: bool
    feedback: str = ""
    result: Any = None

    def to_text(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"

    def to_dict(self) -> dict:
        return {"name": self.name, "args": list(self.args), "kwargs": dict(self.kwargs), "success": self.success, "feedback": self.feedback}


@dataclass
class ProgramResult:
    """What running a program did.

    ok: the program ran to its end (or `return`) and every skill call it made succeeded.
    calls: the skill calls made, in order (none when the program was rejected).
    error: None when ok; otherwise why not (violations, exception, budget, first failed call).
    error_kind: None | "violation" | "runtime" | "skill_failure" | "skill_exception" | "call_budget"
        | "step_budget" | "timeout".
    violations: the checker's findings (non-empty only for "violation").
    completed: the program reached its end or a `return` (a program that tested a failed call and
        carried on can be completed but not ok).
    return_value: what `act` returned (None without `return`).
    steps: interpreter steps taken; elapsed_s: wall time of the run (s).
    """

    ok: bool
    calls: list[CallRecord] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    violations: list[str] = field(default_factory=list)
    completed: bool = False
    return_value: Any = None
    steps: int = 0
    elapsed_s: float = 0.0

    @property
    def first_failure(self) -> CallRecord | None:
        return next((c for c in self.calls if not c.success), None)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "calls": [c.to_dict() for c in self.calls], "error": self.error, "error_kind": self.error_kind,
            "violations": list(self.violations), "completed": self.completed, "steps": self.steps, "elapsed_s": round(self.elapsed_s, 4),
        }


# -- checking -------------------------------------------------------------------------------------
def check_program(code: str) -> list[str]:
    """Violations of the skill-program language (module docstring) with line numbers; [] if allowed.
    Calls are checked against the registered skills (`vlm_agent.skills.api.SKILLS`)."""
    return _check(code, frozenset(SKILLS))[0]


def _parse(code) -> tuple[ast.Module | None, list[str]]:
    if not isinstance(code, str):
        return None, [f"program must be a string, got {type(code).__name__}"]
    if len(code) > MAX_CODE_CHARS:
        return None, [f"program too long ({len(code)} characters, limit {MAX_CODE_CHARS})"]
    try:
        with warnings.catch_warnings():  # e.g. SyntaxWarning for invalid escapes: model text must not spam logs
            warnings.simplefilter("ignore")
            tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        return None, [f"line {exc.lineno or 0}: syntax error: {exc.msg}"]
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:  # null bytes, absurd nesting
        return None, [f"unparseable program: {type(exc).__name__}: {exc}"[:200]]
    # size and depth, iteratively (the recursive checker below relies on this bound)
    stack, count = [(tree, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return None, [f"program too large (more than {MAX_NODES} syntax nodes)"]
        if depth > MAX_DEPTH:
            return None, [f"line {getattr(node, 'lineno', 0)}: nesting deeper than {MAX_DEPTH}"]
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree, []


def _check(code, skill_names: frozenset) -> tuple[list[str], ast.FunctionDef | None]:
    tree, errors = _parse(code)
    if tree is None:
        return errors, None
    checker = _Checker(skill_names)
    fn = checker.module(tree)
    return checker.errors, (fn if not checker.errors else None)


class _Checker:
    def __init__(self, skill_names: frozenset):
        self.skills = skill_names
        self.errors: list[str] = []
        self.robot = ""
        self.assigned: set[str] = set()

    def err(self, node, message: str) -> None:
        lineno = getattr(node, "lineno", None)
        text = f"line {lineno}: {message}" if lineno else message
        if text not in self.errors:
            self.errors.append(text)

    def name_ok(self, node, name: str) -> bool:
        if name.startswith("_"):
            self.err(node, f"names starting with '_' are not allowed ({name!r})")
            return False
        return True

    def module(self, tree: ast.Module) -> ast.FunctionDef | None:
        body = list(tree.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            self.constant(body[0].value)
            body = body[1:]
        fns = [s for s in body if isinstance(s, ast.FunctionDef) and s.name == "act"]
        for s in body:
            if not (isinstance(s, ast.FunctionDef) and s.name == "act"):
                self.err(s, _REJECTED.get(type(s), f"only one 'def act(robot):' is allowed at the top level, not {type(s).__name__}"))
        if len(fns) != 1:
            self.err(tree, "the program must define exactly one function 'def act(robot):'")
            return None
        fn = fns[0]
        a = fn.args
        if fn.decorator_list:
            self.err(fn, "decorators are not allowed")
        if fn.returns is not None or (a.args and a.args[0].annotation is not None):
            self.err(fn, "annotations are not allowed")
        if a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults or a.kw_defaults or len(a.args) != 1:
            self.err(fn, "act must take exactly one parameter: def act(robot):")
            return fn
        self.robot = a.args[0].arg
        if not self.name_ok(fn, self.robot):
            return fn
        # names the function assigns (any order: a use before assignment fails at run time)
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.assigned.add(node.id)
        if self.robot in self.assigned:
            self.err(fn, f"the parameter '{self.robot}' cannot be reassigned")
        self.block(fn.body, loop=False)
        return fn

    def block(self, stmts, loop: bool) -> None:
        for s in stmts:
            self.stmt(s, loop)

    def stmt(self, s, loop: bool) -> None:
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
                self.constant(s.value)  # docstring or stray string
            else:
                self.expr(s.value)
        elif isinstance(s, ast.Assign):
            if len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name):
                self.err(s, "assign to one plain name only (x = ...)")
            else:
                self.name_ok(s, s.targets[0].id)
            self.expr(s.value)
        elif isinstance(s, ast.AugAssign):
            if not isinstance(s.target, ast.Name):
                self.err(s, "augmented assignment to one plain name only")
            else:
                self.name_ok(s, s.target.id)
            if not isinstance(s.op, _AUG_OPS):
                self.err(s, "only +=, -= and *= are allowed")
            self.expr(s.value)
        elif isinstance(s, ast.If):
            self.expr(s.test)
            self.block(s.body, loop)
            self.block(s.orelse, loop)
        elif isinstance(s, ast.For):
            if not isinstance(s.target, ast.Name):
                self.err(s, "a for loop variable must be one plain name")
            else:
                self.name_ok(s, s.target.id)
            if s.orelse:
                self.err(s, "for ... else is not allowed")
            self.loop_iter(s.iter)
            self.block(s.body, loop=True)
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.expr(s.value)
        elif isinstance(s, (ast.Break, ast.Continue)):
            if not loop:
                self.err(s, f"'{type(s).__name__.lower()}' outside a for loop")
        elif isinstance(s, ast.Pass):
            pass
        else:
            self.err(s, _REJECTED.get(type(s), f"{type(s).__name__} statements are not allowed"))

    def loop_iter(self, it) -> None:
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
            if it.keywords or not 1 <= len(it.args) <= 3:
                self.err(it, "range() takes 1 to 3 integer literals")
                return
            values = [_int_literal(a) for a in it.args]
            if any(v is None for v in values):
                self.err(it, "range() arguments must be integer literals")
                return
            if len(values) == 3 and values[2] == 0:
                self.err(it, "range() step must not be zero")
                return
            n = len(range(*values))
            if n > MAX_ITEMS:
                self.err(it, f"range of {n} items is too long (limit {MAX_ITEMS})")
        elif isinstance(it, (ast.List, ast.Tuple, ast.Name)):
            self.expr(it)  # literal sizes are checked there; a name is checked at run time
        else:
            self.err(it, "for may only iterate over range(<int literals>), a list/tuple literal or a local name")

    def constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, int):
            if abs(v) > MAX_INT:
                self.err(node, f"integer literal too large (|x| > {MAX_INT})")
        elif isinstance(v, float):
            if not math.isfinite(v):
                self.err(node, "non-finite float literal")
        elif isinstance(v, str):
            if len(v) > MAX_LITERAL_CHARS:
                self.err(node, f"string literal too long ({len(v)} characters, limit {MAX_LITERAL_CHARS})")
        else:
            self.err(node, f"{type(v).__name__} literals are not allowed")

    def expr(self, e) -> None:
        if isinstance(e, ast.Constant):
            self.constant(e)
        elif isinstance(e, ast.Name):
            if not self.name_ok(e, e.id):
                return
            if e.id == self.robot:
                self.err(e, f"'{self.robot}' may only be used to call skills: {self.robot}.<skill>(...)")
            elif e.id not in self.assigned:
                self.err(e, f"unknown name '{e.id}' (only local variables and {self.robot}.<skill>(...) calls exist)")
        elif isinstance(e, ast.Call):
            self.call(e)
        elif isinstance(e, ast.BoolOp):
            for v in e.values:
                self.expr(v)
        elif isinstance(e, ast.UnaryOp):
            if not isinstance(e.op, (ast.Not, ast.USub, ast.UAdd)):
                self.err(e, "only not, - and + are allowed as unary operators")
            self.expr(e.operand)
        elif isinstance(e, ast.BinOp):
            if type(e.op) not in _BIN_OPS:
                self.err(e, _REJECTED.get(type(e.op), f"operator {type(e.op).__name__} is not allowed"))
            if isinstance(e.op, ast.Mod) and isinstance(e.left, ast.Constant) and isinstance(e.left.value, str):
                self.err(e, "string formatting with % is not allowed")
            self.expr(e.left)
            self.expr(e.right)
        elif isinstance(e, ast.Compare):
            self.expr(e.left)
            for c in e.comparators:
                self.expr(c)
        elif isinstance(e, ast.IfExp):
            self.expr(e.test)
            self.expr(e.body)
            self.expr(e.orelse)
        elif isinstance(e, (ast.List, ast.Tuple)):
            if not isinstance(e.ctx, ast.Load):
                self.err(e, "unpacking assignments are not allowed")
            if len(e.elts) > MAX_ITEMS:
                self.err(e, f"list of {len(e.elts)} items is too long (limit {MAX_ITEMS})")
            for x in e.elts:
                self.expr(x)
        elif isinstance(e, ast.Subscript):
            if isinstance(e.slice, ast.Slice):
                self.err(e, "slices are not allowed")
            else:
                self.expr(e.slice)
            self.expr(e.value)
        else:
            self.err(e, _REJECTED.get(type(e), f"{type(e).__name__} expressions are not allowed"))

    def call(self, e: ast.Call) -> None:
        f = e.func
        if isinstance(f, ast.Name) and f.id == "range":
            self.err(e, "range() is only allowed as the iterable of a for loop")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == self.robot:
            if not self.name_ok(e, f.attr):
                return
            if f.attr not in self.skills:
                self.err(e, f"unknown skill '{f.attr}' (skills: {', '.join(sorted(self.skills))})")
        elif isinstance(f, ast.Name):
            self.name_ok(e, f.id)
            if f.id in self.skills:
                self.err(e, f"call skills on the robot: {self.robot}.{f.id}(...)")
            else:
                self.err(e, f"calling '{f.id}' is not allowed (only {self.robot}.<skill>(...) calls)")
        else:
            self.err(e, _REJECTED[ast.Attribute] if isinstance(f, ast.Attribute) else "only skill calls are allowed")
        for a in e.args:
            self.expr(a)
        for k in e.keywords:
            if k.arg is None:
                self.err(e, "**kwargs are not allowed")
            else:
                self.name_ok(e, k.arg)
            self.expr(k.value)


def _int_literal(node) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) <= MAX_INT:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _int_literal(node.operand)
        return None if v is None else -v
    return None


# -- running --------------------------------------------------------------------------------------
class _Stop(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


class _Return(Exception):
    def __init__(self, value):
        super().__init__()
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_VALUE_TYPES = (type(None), bool, int, float, str, list, tuple)


def _outcome(result) -> tuple[bool, str]:
    """(success, feedback) of whatever a skill callable returned."""
    if result is None:
        return True, ""
    if isinstance(result, bool):
        return result, ""
    success = getattr(result, "success", True)
    return bool(success) if isinstance(success, bool) else True, str(getattr(result, "feedback", ""))[:500]


class _Interpreter:
    """Evaluates a checked `act` function; every statement and expression is one step."""

    def __init__(self, robot: str, skills: Mapping[str, Callable], max_calls: int, deadline: float, max_steps: int):
        self.robot, self.skills = robot, skills
        self.max_calls, self.deadline, self.max_steps = max_calls, deadline, max_steps
        self.vars: dict[str, Any] = {}
        self.calls: list[CallRecord] = []
        self.steps = 0

    def tick(self, node) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise _Stop("step_budget", f"line {getattr(node, 'lineno', 0)}: step budget of {self.max_steps} exhausted")
        if time.monotonic() > self.deadline:
            raise _Stop("timeout", f"line {getattr(node, 'lineno', 0)}: time budget exhausted")

    def fail(self, node, message: str):
        raise _Stop("runtime", f"line {getattr(node, 'lineno', 0)}: {message}")

    # statements
    def block(self, stmts) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s) -> None:
        self.tick(s)
        if isinstance(s, ast.Expr):
            value = self.eval(s.value)
            if isinstance(s.value, ast.Call) and value is False and self.calls and not self.calls[-1].success:
                c = self.calls[-1]
                raise _Stop("skill_failure", f"line {s.lineno}: {c.to_text()} failed: {c.feedback or 'no reason given'}")
        elif isinstance(s, ast.Assign):
            self.vars[s.targets[0].id] = self.eval(s.value)
        elif isinstance(s, ast.AugAssign):
            name = s.target.id
            if name not in self.vars:
                self.fail(s, f"name '{name}' is used before it is assigned")
            self.vars[name] = self.binop(s, s.op, self.vars[name], self.eval(s.value))
        elif isinstance(s, ast.If):
            self.block(s.body if self.truth(s.test) else s.orelse)
        elif isinstance(s, ast.For):
            items = self.iterable(s.iter)
            for item in items:
                self.tick(s)
                self.vars[s.target.id] = item
                try:
                    self.block(s.body)
                except _Break:
                    break
                except _Continue:
                    continue
        elif isinstance(s, ast.Return):
            raise _Return(None if s.value is None else self.eval(s.value))
        elif isinstance(s, ast.Break):
            raise _Break()
        elif isinstance(s, ast.Continue):
            raise _Continue()
        elif isinstance(s, ast.Pass):
            pass
        else:  # unreachable after the checker; refuse rather than guess
            self.fail(s, f"{type(s).__name__} is not allowed")

    def iterable(self, it) -> list:
        if isinstance(it, ast.Call):  # range(<int literals>), bounded by the checker
            items = list(range(*[_int_literal(a) for a in it.args]))
        else:
            items = self.eval(it)
        if not isinstance(items, (list, tuple)):
            self.fail(it, f"for can only iterate over a list, a tuple or a range, not {type(items).__name__}")
        if len(items) > MAX_ITEMS:
            self.fail(it, f"for over {len(items)} items (limit {MAX_ITEMS})")
        return list(items)

    def truth(self, e) -> bool:
        return bool(self.eval(e))

    # expressions
    def eval(self, e):
        self.tick(e)
        if isinstance(e, ast.Constant):
            return e.value
        if isinstance(e, ast.Name):
            if e.id not in self.vars:
                self.fail(e, f"name '{e.id}' is used before it is assigned")
            return self.vars[e.id]
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.BoolOp):
            value = None
            for v in e.values:
                value = self.eval(v)
                if isinstance(e.op, ast.And) and not value:
                    return value
                if isinstance(e.op, ast.Or) and value:
                    return value
            return value
        if isinstance(e, ast.UnaryOp):
            v = self.eval(e.operand)
            if isinstance(e.op, ast.Not):
                return not v
            if not _is_number(v):
                self.fail(e, f"unary minus/plus needs a number, not {type(v).__name__}")
            return -v if isinstance(e.op, ast.USub) else +v
        if isinstance(e, ast.BinOp):
            return self.binop(e, e.op, self.eval(e.left), self.eval(e.right))
        if isinstance(e, ast.Compare):
            left = self.eval(e.left)
            for op, comp in zip(e.ops, e.comparators):
                right = self.eval(comp)
                if not self.compare(e, op, left, right):
                    return False
                left = right
            return True
        if isinstance(e, ast.IfExp):
            return self.eval(e.body) if self.truth(e.test) else self.eval(e.orelse)
        if isinstance(e, ast.List):
            return [self.eval(x) for x in e.elts]
        if isinstance(e, ast.Tuple):
            return tuple(self.eval(x) for x in e.elts)
        if isinstance(e, ast.Subscript):
            seq, index = self.eval(e.value), self.eval(e.slice)
            if not isinstance(seq, (list, tuple, str)) or type(index) is not int:
                self.fail(e, "only list[int], tuple[int] and str[int] indexing is allowed")
            if not -len(seq) <= index < len(seq):
                self.fail(e, f"index {index} out of range (length {len(seq)})")
            return seq[index]
        self.fail(e, f"{type(e).__name__} is not allowed")

    def compare(self, node, op, a, b) -> bool:
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(b, (list, tuple, str)) or (isinstance(b, str) and not isinstance(a, str)):
                self.fail(node, f"'in' needs a list, tuple or string on the right, not {type(b).__name__}")
            return (a in b) == isinstance(op, ast.In)
        if isinstance(op, ast.Is):
            return a is b if a is None or b is None or isinstance(a, bool) else a == b
        if isinstance(op, ast.IsNot):
            return not self.compare(node, ast.Is(), a, b)
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        order = _ORDER.get(type(op))
        if order is None:
            self.fail(node, f"comparison {type(op).__name__} is not allowed")
        if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            self.fail(node, f"cannot order {type(a).__name__} and {type(b).__name__}")
        return order(a, b)

    def binop(self, node, op, a, b):
        sym = _BIN_OPS.get(type(op), "?")
        if isinstance(op, ast.Add) and isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > MAX_STRING_CHARS:
                self.fail(node, f"string longer than {MAX_STRING_CHARS} characters")
            return a + b
        if isinstance(op, ast.Add) and isinstance(a, (list, tuple)) and type(a) is type(b):
            if len(a) + len(b) > MAX_ITEMS:
                self.fail(node, f"list longer than {MAX_ITEMS} items")
            return a + b
        if not (_is_number(a) and _is_number(b)) or sym == "?":
            self.fail(node, f"'{sym}' needs two numbers (or two strings/lists for +), not {type(a).__name__} and {type(b).__name__}")
        try:
            value = _ARITH[type(op)](a, b)
        except (ZeroDivisionError, OverflowError) as exc:
            self.fail(node, f"{type(exc).__name__}: {exc}")
        if isinstance(value, int) and abs(value) > MAX_RUNTIME_INT:
            self.fail(node, "integer too large")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, "non-finite number")
        return value

    def call(self, e: ast.Call):
        name = e.func.attr  # the checker allowed only robot.<skill>(...)
        args = tuple(self.eval(a) for a in e.args)
        kwargs = {k.arg: self.eval(k.value) for k in e.keywords}
        if len(self.calls) >= self.max_calls:
            raise _Stop("call_budget", f"line {e.lineno}: call budget of {self.max_calls} skill calls exhausted")
        self.tick(e)
        try:
            result = self.skills[name](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (any skill exception is feedback, never a planner crash)
            self.calls.append(CallRecord(name, args, kwargs, False, f"{type(exc).__name__}: {exc}"[:500]))
            raise _Stop("skill_exception", f"line {e.lineno}: {self.calls[-1].to_text()} raised {type(exc).__name__}: {exc}"[:500]) from None
        success, feedback = _outcome(result)
        self.calls.append(CallRecord(name, args, kwargs, success, feedback, result))
        return success


def _is_number(v) -> bool:
    return isinstance(v, (int, float))


def run_program(code: str, skills: Mapping[str, Callable], *, max_calls: int = 50, timeout_s: float = 10.0) -> ProgramResult:
    """Check `code` against the skills in `skills`, then run `act(robot)` with `robot.<name>(...)`
    calling `skills[name]`. Never raises for anything the program does; see the module docstring
    for the language, the semantics of failures and the budgets (`max_calls` skill calls,
    `timeout_s` seconds of wall time, `MAX_STEPS` interpreter steps)."""
    start = time.monotonic()
    names = frozenset(n for n in skills if isinstance(n, str) and n.isidentifier() and not n.startswith("_"))
    violations, fn = _check(code, names)
    if violations:
        return ProgramResult(False, [], "program rejected: " + "; ".join(violations), "violation", violations,
                             elapsed_s=time.monotonic() - start)
    interp = _Interpreter(fn.args.args[0].arg, skills, max_calls, start + timeout_s, MAX_STEPS)
    kind = message = None
    completed, value = False, None
    try:
        interp.block(fn.body)
        completed = True
    except _Return as ret:
        completed, value = True, ret.value
    except _Stop as stop:
        kind, message = stop.kind, stop.message
    except RecursionError:  # cannot happen within MAX_DEPTH; kept so nothing escapes to the planner
        kind, message = "runtime", "expression nested too deeply"
    if kind is None and not all(c.success for c in interp.calls):
        first = next(c for c in interp.calls if not c.success)
        kind, message = "skill_failure", f"{first.to_text()} failed: {first.feedback or 'no reason given'}"
    if value is not None and not isinstance(value, _VALUE_TYPES):
        value = None
    return ProgramResult(kind is None, interp.calls, message, kind, [], completed, value, interp.steps, time.monotonic() - start)
