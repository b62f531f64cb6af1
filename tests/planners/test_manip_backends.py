"""Backends of the manipulation loops: the built-in PaLM-E and Octopus families (tiny untrained
directories), a transformers image-text-to-text directory (tiny random LLaVA / Qwen2.5-VL), an
OpenAI-compatible server (mock transport); the prompts each kind gets; hostile prompts."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from vlm_agent.planners.backends import BackendError
from vlm_agent.planners.manip_backends import (
    BuiltinOctopusBackend,
    BuiltinPalmeBackend,
    RemoteManipBackend,
    TransformersManipBackend,
    compact_prompt,
    general_prompt,
    make_manip_backend,
    object_phrases,
    parse_state_text,
    state_slot,
    step_lines,
    task_of,
)
from vlm_agent.planners.octopus_format import format_instructions
from vlm_agent.planners.octopus_loop import octopus_prompt, run_octopus_episode
from vlm_agent.planners.palme_grammar import grammar_text, parse_plan
from vlm_agent.planners.palme_loop import PalmeConfig, palme_prompt, run_palme_episode, state_text
from vlm_agent.skills.api import SKILLS, skills_prompt

from . import tiny_vlms
from .test_manip_loops import TableTopSkills

STATE = {"base_pose": [1.234, -2.5, 0.3], "gripper": "open", "held": None, "support/red cube": "floor"}
TASK = "put the red cube on the blue plate"


def frame(seed=0, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def palme_dir(tmp_path_factory):
    from tests.helpers.tiny_manip import save_untrained_manip_model

    return save_untrained_manip_model(tmp_path_factory.mktemp("palme"), "palme", seed=0)


@pytest.fixture(scope="module")
def octopus_dir(tmp_path_factory):
    from tests.helpers.tiny_manip import save_untrained_manip_model

    return save_untrained_manip_model(tmp_path_factory.mktemp("octopus"), "octopus", seed=0, max_new_tokens=32)


def _palme_prompt(history=(), error=None, instruction=TASK, n_images=1):
    return palme_prompt(instruction, STATE, list(history), n_images, error)


# -- reading the loops' prompts -----------------------------------------------------------------------
@pytest.mark.parametrize("state", [
    STATE,
    {"base_pose": [-0.004, 12.5, -3.14159], "gripper": "closed", "held": "blue ball"},
    {"gripper": "unknown"},
    {"base_pose": [0.0, 0.0, 0.0], "gripper": 0.4, "held": "yellow cylinder"},
])
def test_state_text_parses_back(state):
    out = parse_state_text(state_text(state))
    pose = state.get("base_pose")
    if pose is None:
        assert out["base_pose"] is None
    else:
        assert out["base_pose"] == pytest.approx(pose, abs=0.006)
    assert out["gripper"] == state.get("gripper", "unknown")
    assert out["held"] == state.get("held")


@pytest.mark.parametrize("bad", ["", "base at x=1 m", "hello; gripper open; holding nothing", "base pose unknown; gripper open", 7])
def test_state_text_that_is_not_the_loops_is_an_error(bad):
    with pytest.raises(ValueError, match="state"):
        parse_state_text(bad)


def test_prompt_pieces():
    p = _palme_prompt()
    assert state_slot(p) == state_text(STATE) and state_slot("no slot") is None
    assert task_of(p) == TASK and task_of("nothing") is None
    assert object_phrases("put the Red Cube on top of the blue plate, then the table") == ["red cube", "blue plate", "table"]
    assert object_phrases("pile the cyan block onto the cube near the desk") == ["cyan block", "cube", "desk"]
    assert object_phrases("golden chalice") == [] and object_phrases(None) == []
    steps, last = step_lines(["red cube"])
    assert last == ["done()"]
    assert set(steps) == {"navigate_to(red cube)", "pick(red cube)", "place_on(red cube)", "locate(red cube)",
                          "open_gripper()", "close_gripper()", "look_around()"}
    assert {s.split("(")[0] for s in steps + last} == set(SKILLS)


def test_compact_and_general_prompts():
    p = _palme_prompt([("navigate_to('red cube')", "ok: at red cube")], "could not parse the plan: no steps")
    compact = compact_prompt("palme", p)
    assert grammar_text() in p and grammar_text() not in compact
    for kept in ("<img>", "<state>", "Task: " + TASK, "navigate_to('red cube') -> ok", "could not parse", "Next steps:"):
        assert kept in compact
    general = general_prompt("palme", p)
    assert "<state>" not in general and "Robot state: " + state_text(STATE) in general
    assert skills_prompt() in general and grammar_text() in general and general.index(skills_prompt()) < general.index(grammar_text())
    assert general.count("<img>") == 1
    op = octopus_prompt(TASK, STATE, ["The code made 0 skill call(s):"], 2)
    assert format_instructions() in op and format_instructions() not in compact_prompt("octopus", op)
    assert "Task: " + TASK in compact_prompt("octopus", op) and compact_prompt("octopus", op).count("<img>") == 2
    assert general_prompt("octopus", op).endswith(format_instructions())
    with pytest.raises(ValueError, match="unknown planner style"):
        compact_prompt("navid", p)


# -- the built-in families ------------------------------------------------------------------------------
def test_builtin_palme_answers_a_valid_step(palme_dir):
    """Constrained decoding over the task's objects: whatever the untrained weights, the text is one
    valid step over the registered skills and the objects the task names."""
    backend = BuiltinPalmeBackend(palme_dir)
    for seed in range(3):
        text = backend(_palme_prompt(), [frame(seed)])
        assert backend.last_decoding == "constrained"
        parsed = parse_plan(text)
        assert parsed.ok and len(parsed.steps) == 1, text
        assert all(a in ("red cube", "blue plate") for a in parsed.steps[0].args)


def test_builtin_palme_plan_steps_and_extra_objects(palme_dir):
    backend = make_manip_backend("palme", "builtin", model_dir=palme_dir, plan_steps=3, objects_fn=lambda: ["The Table", "red cube", "a <b>ad}", 7])
    assert backend.candidate_objects(_palme_prompt()) == ["red cube", "blue plate", "table"]
    text = backend(_palme_prompt(), [frame()])
    parsed = parse_plan(text)
    assert parsed.ok and 1 <= len(parsed.steps) <= 3, text
    assert all(c.name != "done" for c in parsed.steps[:-1])


def test_builtin_palme_falls_back_to_greedy_without_objects(palme_dir):
    backend = BuiltinPalmeBackend(palme_dir, max_new_tokens=8)
    text = backend(_palme_prompt(instruction="tidy up"), [frame()])
    assert backend.last_decoding == "greedy" and isinstance(text, str)
    greedy = BuiltinPalmeBackend(palme_dir, decoding="greedy", max_new_tokens=8)
    assert isinstance(greedy(_palme_prompt(), [frame()]), str) and greedy.last_decoding == "greedy"


@pytest.mark.parametrize("prompt,images,match", [
    (None, [], "expected the prompt as text"),
    ("<img> <state>base pose unknown; gripper open; holding nothing</state> Task: x", [], r"1 <img> placeholder.* 0 image"),
    ("<img> <state>{\"x\": 1}</state> Task: x", [frame()], "does not hold the loop's state text"),
    ("<img> <state>base pose unknown; gripper half; holding nothing</state> Task: x", [frame()], "gripper"),
    ("<img> Task: x", [np.zeros((4, 4), np.uint8)], "RGB frame"),
    ("<img> <state>base pose unknown; gripper open; holding nothing</state> " + "Task: put the red cube down " * 300, [frame()], "tokens after expansion"),
])
def test_builtin_palme_hostile_prompts_raise_clear_errors(palme_dir, prompt, images, match):
    with pytest.raises(ValueError, match=match):
        BuiltinPalmeBackend(palme_dir)(prompt, images)


def test_builtin_backends_refuse_other_families(palme_dir, octopus_dir):
    with pytest.raises(ValueError, match="a 'octopus' model, not a palme one"):
        BuiltinPalmeBackend(octopus_dir)
    with pytest.raises(ValueError, match="a 'palme' model, not a octopus one"):
        BuiltinOctopusBackend(palme_dir)
    with pytest.raises(ValueError, match="decoding"):
        BuiltinPalmeBackend(palme_dir, decoding="beam")


def test_builtin_octopus_returns_text(octopus_dir):
    backend = make_manip_backend("octopus", "builtin", model_dir=octopus_dir)
    text = backend(octopus_prompt(TASK, STATE, [], 1), [frame()])
    assert isinstance(text, str) and len(backend.processor.tokenizer(text, add_special_tokens=False).input_ids) <= 40
    with pytest.raises(ValueError, match="2 <img> placeholder"):
        backend(octopus_prompt(TASK, STATE, [], 2), [frame()])


def test_builtin_octopus_leaves_out_the_oldest_feedback_when_too_long(octopus_dir):
    """Three rounds of a 50-call program's feedback do not fit 1536 tokens: the older rounds go, then
    the latest round's earliest call lines; its last calls and verdict stay; the model answers."""
    backend = BuiltinOctopusBackend(octopus_dir)
    long_feedback = ["The code made 50 skill call(s):\n" + "\n".join(f"- pick('red cube'): FAILED: round {k} call {i} out of reach" for i in range(50))
                     + "\nFirst failure: pick('red cube'): out of reach\nTask not complete." for k in range(3)]
    prompt = octopus_prompt(TASK, STATE, long_feedback, 1)
    compact = compact_prompt("octopus", prompt)
    with pytest.raises(ValueError, match="tokens after expansion"):
        backend.processor(text=compact, images=[frame()])
    fitted = backend.fit(compact)
    assert fitted.startswith("<img> Robot:") and "Task: " + TASK in fitted
    assert "round 0" not in fitted and "round 1" not in fitted and "round 2 call 0 " not in fitted
    assert "round 2 call 49" in fitted and "earlier call line(s) left out" in fitted and fitted.endswith("Task not complete.")
    assert len(backend.processor(text=fitted, images=[frame()])["input_ids"][0]) <= 1536
    assert isinstance(backend(prompt, [frame()]), str)
    short = compact_prompt("octopus", octopus_prompt(TASK, STATE, ["ok", "ok"], 1))
    assert backend.fit(short) == short


def test_loops_run_on_the_builtin_backends(palme_dir, octopus_dir, tmp_path):
    """Whatever an untrained model says, the loops run to their budgets without crashing: PaLM-E
    executes valid steps, Octopus records its (unparseable) responses as feedback."""
    skills = TableTopSkills()
    ep = run_palme_episode(BuiltinPalmeBackend(palme_dir), skills, TASK, observe=lambda: [frame()], config=PalmeConfig(max_steps=3, max_model_calls=3))
    assert ep.records and all(r.error is None for r in ep.records)
    assert ep.steps_executed >= 1 and ep.reason in ("done", "step_budget", "model_call_budget")
    from vlm_agent.planners.octopus_loop import OctopusConfig
    from vlm_agent.planners.rlef_dataset import RlefDatasetWriter, read_rlef_dataset

    oct_ep = run_octopus_episode(BuiltinOctopusBackend(octopus_dir), TableTopSkills(), TASK, observe=lambda: [frame()],
                                 dataset=RlefDatasetWriter(tmp_path / "rlef"), config=OctopusConfig(max_rounds=2))
    assert len(oct_ep.rounds) == 2 and not oct_ep.success
    assert all(r.parse_errors and r.program is None for r in oct_ep.rounds)
    assert len(read_rlef_dataset(tmp_path / "rlef")) == 2


# -- general VLMs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["llava", "qwen2_5_vl"])
def test_transformers_backend_runs_tiny_vlms(name, tmp_path):
    directory = tiny_vlms.BUILDERS[name](str(tmp_path / name))
    backend = make_manip_backend("palme", "transformers", model_dir=directory, max_new_tokens=6)
    assert isinstance(backend, TransformersManipBackend)
    seen = []
    template = backend.processor.apply_chat_template

    def spy(messages, **kw):
        seen.append(messages)
        return template(messages, **kw)

    backend.processor.apply_chat_template = spy
    text = backend(_palme_prompt(), [frame()])
    assert isinstance(text, str)
    (content,) = [m["content"] for m in seen[0]]
    assert [c["type"] for c in content] == ["text", "image", "text"]
    assert content[0]["text"].startswith("You are the task planner") and skills_prompt() in content[2]["text"]
    with pytest.raises(ValueError, match="placeholder"):
        backend(_palme_prompt(), [frame(), frame()])


def _remote(handler, style="palme", **kw):
    return RemoteManipBackend("http://model.test/v1", "m", style, transport=httpx.MockTransport(handler), backoff_s=0.0, **kw)


def _reply(text):
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})


def test_remote_request_interleaves_images_and_carries_the_skill_docs():
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return _reply("1. pick(red cube)")

    backend = _remote(handler, max_tokens=40)
    prompt = "first <img> then <img> " + _palme_prompt(n_images=0)
    assert backend(prompt, [frame(0), frame(1, h=600, w=800)]) == "1. pick(red cube)"
    body = seen[0]
    assert body["model"] == "m" and body["max_tokens"] == 40 and body["temperature"] == 0.0
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text", "image_url", "text"]
    assert content[0]["text"].endswith("first") and content[2]["text"] == "then"
    assert all(c["image_url"]["url"].startswith("data:image/png;base64,") for c in content if c["type"] == "image_url")
    text = content[-1]["text"]
    assert skills_prompt() in text and grammar_text() in text and "Robot state: " in text and "<state>" not in text
    import base64
    import io

    from PIL import Image

    big = Image.open(io.BytesIO(base64.b64decode(content[3]["image_url"]["url"].split(",", 1)[1])))
    assert max(big.size) == 448  # downscaled for transport


def test_remote_octopus_retries_and_errors():
    calls = []

    def flaky(request):
        calls.append(1)
        return httpx.Response(503, text="busy") if len(calls) == 1 else _reply("Explanation:\nx")

    backend = _remote(flaky, style="octopus")
    assert backend(octopus_prompt(TASK, STATE, [], 1), [frame()]) == "Explanation:\nx" and len(calls) == 2
    body = backend.request_body(octopus_prompt(TASK, STATE, [], 1), [frame()])
    assert body["max_tokens"] == 512 and format_instructions() in body["messages"][0]["content"][-1]["text"]
    with pytest.raises(BackendError, match="HTTP 400"):
        _remote(lambda r: httpx.Response(400, text="bad"))(_palme_prompt(), [frame()])
    with pytest.raises(BackendError, match="malformed"):
        _remote(lambda r: httpx.Response(200, json={"nope": 1}))(_palme_prompt(), [frame()])


def test_remote_backend_failure_is_loop_feedback_not_a_crash():
    backend = _remote(lambda r: httpx.Response(500, text="down"), retries=0)
    ep = run_palme_episode(backend, TableTopSkills(), TASK, config=PalmeConfig(max_model_calls=2))
    assert ep.steps_executed == 0 and all("backend error: BackendError" in r.error for r in ep.records)


def test_make_manip_backend_errors(palme_dir):
    with pytest.raises(ValueError, match="unknown planner style"):
        make_manip_backend("navid", "builtin", model_dir=palme_dir)
    with pytest.raises(ValueError, match="unknown backend kind"):
        make_manip_backend("palme", "ollama")
    with pytest.raises(ValueError, match="needs a model directory"):
        make_manip_backend("palme", "builtin")
    with pytest.raises(ValueError, match="needs base_url"):
        make_manip_backend("octopus", "remote")
    with pytest.raises(FileNotFoundError):
        make_manip_backend("palme", "builtin", model_dir="/nonexistent/dir")
