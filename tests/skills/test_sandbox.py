"""The skill-program sandbox: a hostile corpus that never causes a side effect, budgets that stop
tight loops, and legitimate programs that make exactly the expected skill calls."""
import textwrap
import time

import pytest

from vlm_agent.skills import sandbox
from vlm_agent.skills.api import SKILLS
from vlm_agent.skills.sandbox import MAX_STEPS, ProgramResult, check_program, run_program

CANARY = {"touched": False}


class Recorder:
    """Skills that only record their calls (`calls`), returning success unless told otherwise."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def skills(self):
        def make(name):
            def skill(*args, **kwargs):
                self.calls.append((name, args, kwargs))
                return name not in self.fail

            return skill

        return {name: make(name) for name in SKILLS}


def act(body: str) -> str:
    return "def act(robot):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


# Every entry tries to do something a skill program must not. {S} is replaced by a sentinel path that
# the test checks was never created; CANARY is a module global the programs try to reach.
HOSTILE_REJECTED = {
    # imports and builtins
    "import": "import os\ndef act(robot):\n    os.system('touch {S}')\n",
    "import_inside": act("import os\nos.system('touch {S}')"),
    "from_import": act("from os import system\nsystem('touch {S}')"),
    "dunder_import": act("__import__('os').system('touch {S}')"),
    "open_file": act("open('{S}', 'w').write('x')"),
    "exec": act("exec(\"open('{S}', 'w')\")"),
    "eval": act("eval(\"open('{S}', 'w')\")"),
    "compile": act("compile('1', 'f', 'exec')"),
    "getattr_robot": act("getattr(robot, 'pick')('x')"),
    "globals": act("globals()['CANARY']['touched'] = True"),
    "locals": act("locals()"),
    "vars": act("vars(robot)"),
    "print": act("print('hello')"),
    "breakpoint": act("breakpoint()"),
    "input": act("input()"),
    "type_call": act("type('X', (), {})"),
    "builtins_name": act("b = __builtins__\nb['open']('{S}', 'w')"),
    # dunder and attribute escapes
    "class_mro": act("x = ().__class__.__mro__[1].__subclasses__()"),
    "string_class": act("x = 'a'.__class__"),
    "robot_dunder": act("robot.__class__.__init__.__globals__['CANARY']['touched'] = True"),
    "robot_dict": act("robot.__dict__"),
    "skill_globals": act("robot.pick.__globals__"),
    "method_on_literal": act("'{S}'.upper()"),
    "join_trick": act("x = ''.join(['o', 'p', 'e', 'n'])"),
    "format_method": act("x = '{{0.__class__}}'.format(robot)"),
    "fstring": act("x = f'{{robot}}'"),
    "fstring_dunder": act("x = f'{{robot.__class__}}'"),
    "percent_format": act("x = '%s' % 'a'"),
    "underscore_name": act("_x = 1"),
    "underscore_kwarg": act("robot.pick(__class__='x')"),
    "attr_on_result": act("r = robot.locate('red cube')\nx = r.position"),
    "robot_alias": act("r = robot\nr.pick('red cube')"),
    "robot_reassign": act("robot = 1"),
    "robot_passed": act("robot.pick(robot)"),
    "unknown_skill": act("robot.self_destruct()"),
    "bare_skill": act("pick('red cube')"),
    "dynamic_call": act("f = 1\nf()"),
    # functions, recursion, classes, generators, async
    "recursion": act("act(robot)"),
    "nested_def": act("def g():\n    g()\ng()"),
    "lambda": act("f = lambda: 1"),
    "class": act("class A:\n    pass"),
    "top_level_class": "class A:\n    pass\ndef act(robot):\n    pass\n",
    "decorator": "@staticmethod\ndef act(robot):\n    pass\n",
    "generator": act("yield 1"),
    "async_def": "async def act(robot):\n    await robot.pick('x')\n",
    "two_acts": "def act(robot):\n    pass\ndef act(robot):\n    pass\n",
    "no_act": "def main(robot):\n    pass\n",
    "default_arg": "def act(robot, x=open('{S}', 'w')):\n    pass\n",
    "varargs": "def act(*robots):\n    pass\n",
    "annotation": "def act(robot: open('{S}', 'w')):\n    pass\n",
    "top_level_call": "def act(robot):\n    pass\nact(1)\n",
    # control flow that is not allowed
    "while_true": act("while True:\n    pass"),
    "while_skill": act("while robot.pick('x'):\n    pass"),
    "try": act("try:\n    pass\nexcept Exception:\n    pass"),
    "with": act("with open('{S}') as f:\n    pass"),
    "raise": act("raise SystemExit"),
    "global": act("global CANARY\nCANARY = 1"),
    "nonlocal": "def act(robot):\n    nonlocal x\n",
    "del": act("x = 1\ndel x"),
    "assert": act("assert False"),
    "walrus": act("if (x := 1):\n    pass"),
    "break_outside": act("break"),
    "for_else": act("for i in range(2):\n    pass\nelse:\n    robot.pick('x')"),
    # comprehensions and resource exhaustion
    "list_comp": act("x = [i for i in range(10)]"),
    "gen_exp": act("x = list(i for i in range(10))"),
    "dict_comp": act("x = {{i: i for i in range(3)}}"),
    "huge_range": act("for i in range(10**9):\n    robot.pick('x')"),
    "big_range_literal": act("for i in range(1000000):\n    pass"),
    "range_from_variable": act("n = 10\nfor i in range(n):\n    pass"),
    "range_outside_for": act("x = range(5)"),
    "range_zero_step": act("for i in range(0, 10, 0):\n    pass"),
    "power": act("x = 2 ** 100000"),
    "huge_int_literal": act("x = 1" + "0" * 20),
    "huge_string_literal": act("x = '" + "a" * 5000 + "'"),
    "huge_list_literal": act("x = [" + ", ".join(["1"] * 500) + "]"),
    "string_repeat_slice": act("x = 'abc'[::-1]"),
    "starred": act("robot.pick(*['x'])"),
    "kwargs_splat": act("robot.pick(**{{'object': 'x'}})"),
    "dict_literal": act("x = {{'a': 1}}"),
    "set_literal": act("x = {{1, 2}}"),
    "bytes_literal": act("x = b'abc'"),
    "tuple_unpack": act("a, b = 1, 2"),
    "subscript_assign": act("x = [1]\nx[0] = 2"),
    "deep_nesting": act("x = " + "[" * 90 + "1" + "]" * 90),
    "deep_parens": act("x = " + "(" * 250 + "1" + ")" * 250),
    "deep_not": act("x = " + "not " * 300 + "True"),
    "too_long": act("x = 1\n" * 3000),
    "null_byte": act("x = 1\x00"),
    "syntax_error": act("robot.pick('x'"),
    "not_a_string": None,  # replaced below: a non-str program
    "match": act("match 1:\n    case 1:\n        pass"),
}


@pytest.fixture
def sentinel(tmp_path):
    return tmp_path / "sentinel"


def _fill(code, sentinel):
    return code.replace("{S}", str(sentinel)).replace("{{", "{").replace("}}", "}")


def test_hostile_corpus_is_rejected_before_any_side_effect(sentinel):
    assert len(HOSTILE_REJECTED) >= 50
    for key, raw in HOSTILE_REJECTED.items():
        code = 12345 if raw is None else _fill(raw, sentinel)
        violations = check_program(code)
        assert violations, key
        rec = Recorder()
        result = run_program(code, rec.skills())
        assert isinstance(result, ProgramResult)
        assert not result.ok and result.error_kind == "violation" and result.violations == violations, key
        assert result.calls == [] and rec.calls == [], key
        assert not sentinel.exists() and CANARY == {"touched": False}, key


def test_violations_name_the_line_and_the_reason():
    assert check_program(act("x = 1\nimport os")) == ["line 3: imports are not allowed"]
    assert any("robot.pick" in v for v in check_program(act("pick('red cube')")))
    assert any("range of 1000 items" in v for v in check_program(act("for i in range(1000):\n    pass")))
    assert any("unknown name 'y'" in v for v in check_program(act("x = y")))


# Hostile programs that are syntactically allowed: the budgets stop them.
def test_tight_loops_are_stopped_by_the_step_budget_quickly():
    rec = Recorder()
    code = act("x = 0\nfor i in range(100):\n    for j in range(100):\n        for k in range(100):\n            x += 1")
    t0 = time.monotonic()
    result = run_program(code, rec.skills(), timeout_s=30.0)
    assert time.monotonic() - t0 < 5.0
    assert not result.ok and result.error_kind == "step_budget" and result.steps == MAX_STEPS + 1 and rec.calls == []


def test_the_time_budget_stops_a_long_loop():
    rec = Recorder()
    code = act("x = 0\nfor i in range(100):\n    for j in range(100):\n        for k in range(100):\n            x += 1")
    t0 = time.monotonic()
    # 0.01 s is ~12k steps here; the step budget (100k) would need 10M steps/s to be reached first.
    result = run_program(code, rec.skills(), timeout_s=0.01)
    assert result.error_kind == "timeout" and not result.ok and result.steps < MAX_STEPS
    assert time.monotonic() - t0 < 3.0  # generous: the CPU is shared


def test_the_call_budget_stops_call_floods():
    rec = Recorder()
    code = act("for i in range(100):\n    for j in range(100):\n        robot.look_around()")
    result = run_program(code, rec.skills(), max_calls=7)
    assert result.error_kind == "call_budget" and len(rec.calls) == 7 and len(result.calls) == 7


def test_a_slow_skill_exhausts_the_time_budget_at_the_next_step():
    calls = []

    def slow(*args):
        calls.append(args)
        time.sleep(0.05)
        return True

    result = run_program(act("for i in range(100):\n    robot.look_around()"), {"look_around": slow}, timeout_s=0.12)
    assert result.error_kind == "timeout" and 2 <= len(calls) <= 4


@pytest.mark.parametrize("body,kind", [
    ("x = 'a' + 'b'\nfor i in range(100):\n    x = x + x", "runtime"),  # exponential string growth
    ("x = [1]\nfor i in range(10):\n    x = x + x", "runtime"),  # list growth
    ("x = 2\nfor i in range(100):\n    x = x * x", "runtime"),  # big-int growth
    ("x = 1.5\nfor i in range(100):\n    x = x * 1e300", "runtime"),
    ("x = 1 / 0", "runtime"),
    ("x = [1, 2][5]", "runtime"),
    ("x = 'a' * 3", "runtime"),  # repetition is not allowed on strings
    ("x = 'a' - 1", "runtime"),
    ("n = 5\nfor i in n:\n    pass", "runtime"),
    ("x = y\ny = 1", "runtime"),  # use before assignment
    ("x = 'a' < 1", "runtime"),
    ("x = 1 in 5", "runtime"),
])
def test_bad_operations_stop_with_a_runtime_error(body, kind):
    rec = Recorder()
    result = run_program(act(body), rec.skills())
    assert check_program(act(body)) == []
    assert not result.ok and result.error_kind == kind and result.error.startswith("line ") and rec.calls == []


def test_skill_exceptions_are_contained():
    def boom(*args):
        raise RuntimeError("driver crashed")

    result = run_program(act("robot.pick('red cube')\nrobot.done()"), {"pick": boom, "done": lambda: True})
    assert result.error_kind == "skill_exception" and "driver crashed" in result.error
    assert [c.name for c in result.calls] == ["pick"] and not result.calls[0].success


# Legitimate programs: exactly the expected calls.
LEGIT = [
    (act("robot.navigate_to('red cube')\nrobot.pick('red cube')\nrobot.navigate_to('blue plate')\nrobot.place_on('blue plate')"),
     [("navigate_to", ("red cube",)), ("pick", ("red cube",)), ("navigate_to", ("blue plate",)), ("place_on", ("blue plate",))]),
    ('"""Move the cube."""\n' + act('"""Pick and place."""\ntarget = "red cube"\nrobot.pick(object=target)\nrobot.place_on("table")\nrobot.done()'),
     [("pick", (), {"object": "red cube"}), ("place_on", ("table",)), ("done", ())]),
    (act("for name in ['a', 'b', 'c']:\n    robot.locate(name)"), [("locate", ("a",)), ("locate", ("b",)), ("locate", ("c",))]),
    (act("objs = ('a', 'b')\nfor o in objs:\n    if o == 'b':\n        robot.pick(o)\n    else:\n        continue"), [("pick", ("b",))]),
    (act("for i in range(2, 8, 3):\n    robot.look_around()\n    if i > 2:\n        break"), [("look_around", ())] * 2),
    (act("if robot.locate('red cube') or robot.locate('blue cube'):\n    robot.pick('red cube')"),  # short-circuit
     [("locate", ("red cube",)), ("pick", ("red cube",))]),
    (act("if robot.locate('red cube') and not robot.locate('blue cube'):\n    robot.pick('red cube')\nelse:\n    robot.done()"),
     [("locate", ("red cube",)), ("locate", ("blue cube",)), ("done", ())]),
    (act("n = 0\nfor i in range(3):\n    n += 2\nif n == 6:\n    robot.done()\nreturn n"), [("done", ())]),
    (act("name = 'red' + ' ' + 'cube'\nrobot.pick(name if 1 < 2 else 'x')\nrobot.open_gripper()\nrobot.close_gripper()"),
     [("pick", ("red cube",)), ("open_gripper", ()), ("close_gripper", ())]),
    (act("x = [1, 2, 3]\nif 2 in x and x[0] is not None and -x[2] <= -3:\n    robot.done()\nelse:\n    pass"), [("done", ())]),
]


@pytest.mark.parametrize("code,expected", LEGIT)
def test_legitimate_programs_make_exactly_the_expected_calls(code, expected):
    assert check_program(code) == []
    rec = Recorder()
    result = run_program(code, rec.skills())
    assert result.ok and result.completed and result.error is None, result.error
    expected = [(e[0], e[1], e[2] if len(e) > 2 else {}) for e in expected]
    assert rec.calls == expected
    assert [(c.name, c.args, c.kwargs) for c in result.calls] == expected


def test_return_value_and_checked_versus_unchecked_failures():
    rec = Recorder(fail={"pick"})
    # unchecked: the failed pick stops the program, place_on never runs
    r = run_program(act("robot.pick('red cube')\nrobot.place_on('table')"), rec.skills())
    assert r.error_kind == "skill_failure" and [c[0] for c in rec.calls] == ["pick"] and not r.completed
    assert r.first_failure.name == "pick"
    # checked: the program handles it and carries on, but the run is not ok
    rec = Recorder(fail={"pick"})
    r = run_program(act("if not robot.pick('red cube'):\n    robot.look_around()\nreturn 'tried'"), rec.skills())
    assert [c[0] for c in rec.calls] == ["pick", "look_around"] and r.completed and r.return_value == "tried"
    assert not r.ok and r.error_kind == "skill_failure"


def test_skill_results_with_a_success_field_and_feedback_are_recorded():
    from vlm_agent.skills.api import SkillResult

    r = run_program(act("robot.pick('x')"), {"pick": lambda o: SkillResult(False, "no object matches 'x'")})
    assert r.calls[0].feedback == "no object matches 'x'" and "no object matches" in r.error
    assert r.to_dict()["calls"][0] == {"name": "pick", "args": ["x"], "kwargs": {}, "success": False, "feedback": "no object matches 'x'"}


def test_run_program_checks_calls_against_the_given_skills():
    r = run_program(act("robot.pick('x')"), {"done": lambda: True})
    assert r.error_kind == "violation" and "unknown skill 'pick'" in r.error
    r = run_program(act("robot.fly()"), {"fly": lambda: True, "__class__": lambda: True})
    assert r.ok and r.calls[0].name == "fly"


def test_the_interpreter_never_compiles_model_text(monkeypatch):
    """Nothing the model writes reaches exec/eval or is compiled to code: the run happens with exec and
    eval poisoned and compile allowed only to build an AST (what ast.parse does)."""
    import ast
    import builtins

    real_compile = builtins.compile
    compiled = []

    def poisoned(*a, **k):
        raise AssertionError("exec/eval called")

    def ast_only_compile(source, filename, mode, flags=0, *a, **k):
        compiled.append(flags & ast.PyCF_ONLY_AST)
        if not flags & ast.PyCF_ONLY_AST:
            raise AssertionError("compile to code called")
        return real_compile(source, filename, mode, flags, *a, **k)

    monkeypatch.setattr(builtins, "exec", poisoned)
    monkeypatch.setattr(builtins, "eval", poisoned)
    monkeypatch.setattr(builtins, "compile", ast_only_compile)
    rec = Recorder()
    result = run_program(LEGIT[0][0], rec.skills())
    monkeypatch.undo()
    assert result.ok and len(rec.calls) == 4 and compiled and all(compiled)


# Totality: arbitrary text and token soup never raise, and never call anything when rejected.
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_TOKENS = ["def act(robot):\n", "    ", "robot.", "pick", "(", ")", "'red cube'", "for i in ", "range(", "3", ":\n", "if ",
           "while ", "import os", "__class__", ".", "[", "]", ",", "=", "x", "+", "*", "**", "not ", "return ", "lambda", "\n",
           "f'", "{", "}", "%", "1e308", "-", "True", "None", "yield", "async ", "global x", "try:", "except:", "@"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)))
def test_arbitrary_text_never_raises(code):
    violations = check_program(code)
    assert isinstance(violations, list) and all(isinstance(v, str) for v in violations)
    rec = Recorder()
    result = run_program(code, rec.skills(), max_calls=5, timeout_s=1.0)
    assert isinstance(result, ProgramResult) and (result.ok or result.error)
    if violations:
        assert rec.calls == [] and result.error_kind == "violation"
    assert len(rec.calls) <= 5
