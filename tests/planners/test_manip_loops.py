"""PaLM-E and Octopus closed loops with scripted backends (no model): feedback flows into the next
prompt, budgets hold, every Octopus round lands in the RLEF dataset; and on the simulator's manip
suite the oracle backends score 1.00 through parsers, sandbox and skill layer."""
import numpy as np
import pytest

from vlm_agent.evaluation.manip_planners import OracleOctopusBackend, evaluate_manip_planner, oracle_program_code
from vlm_agent.planners.octopus_format import OctopusResponse, TargetPredicate, format_response
from vlm_agent.planners.octopus_loop import OctopusConfig, run_octopus_episode
from vlm_agent.planners.palme_loop import IMAGE_TOKEN, PalmeConfig, run_palme_episode
from vlm_agent.planners.rlef_dataset import RlefDatasetWriter, read_rlef_dataset
from vlm_agent.skills.api import SkillAPI, SkillError, SkillResult
from vlm_agent.skills.resolver import normalise_phrase


class TableTopSkills(SkillAPI):
    """A symbolic world: objects rest on supports, the robot holds at most one; records every call."""

    def __init__(self):
        self.support = {"red cube": "floor", "blue plate": "floor"}
        self.held = None
        self.at = None
        self.calls = []
        self.done_called = False

    def _obj(self, ref):
        name = normalise_phrase(ref).removeprefix("the ")
        if name not in self.support and name != "table":
            raise SkillError(f"no object matches '{ref}'")
        return name

    def navigate_to(self, object):
        self.calls.append(("navigate_to", object))
        self.at = self._obj(object)
        return SkillResult(True, f"at {self.at}")

    def pick(self, object):
        self.calls.append(("pick", object))
        name = self._obj(object)
        if self.at != name:
            raise SkillError(f"{name} is out of reach")
        self.held, self.support[name] = name, "gripper"
        return SkillResult(True, f"holding {name}")

    def place_on(self, object):
        self.calls.append(("place_on", object))
        dest = self._obj(object)
        if self.held is None:
            raise SkillError("not holding anything")
        self.support[self.held], self.held = dest, None
        return SkillResult(True, "placed")

    def open_gripper(self):
        return SkillResult(True, "open")

    def close_gripper(self):
        return SkillResult(True, "closed")

    def look_around(self):
        return SkillResult(True, "seen: " + ", ".join(self.support))

    def locate(self, object):
        name = self._obj(object)
        return SkillResult(True, name, found=True, position=(1.0, 2.0, 0.0), frame="odom")

    def done(self):
        self.calls.append(("done",))
        self.done_called = True
        return SkillResult(True, "done")

    def state(self):
        return {"held": self.held, "gripper": "open", "base_pose": [0.0, 0.0, 0.0], **{f"support/{k}": v for k, v in self.support.items()}}

    def holds(self, predicate, args):
        if predicate == "on":
            return self.support.get(self._obj(args[0])) == self._obj(args[1])
        if predicate == "holding":
            return self.held is None if args[0] == "nothing" else self.held == self._obj(args[0])
        raise SkillError(f"cannot check {predicate}")


class Scripted:
    """Replies from a list (the last one repeats); records prompts and image counts."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts, self.n_images = [], []

    def __call__(self, prompt, images):
        self.prompts.append(prompt)
        self.n_images.append(len(images))
        reply = self.replies[min(len(self.prompts) - 1, len(self.replies) - 1)]
        if isinstance(reply, Exception):
            raise reply
        return reply


FRAME = np.zeros((8, 8, 3), np.uint8)


# -- PaLM-E ------------------------------------------------------------------------------------------
def test_palme_loop_replans_after_every_step_and_feeds_back_errors():
    skills = TableTopSkills()
    backend = Scripted([
        "Sure! I will pick the cube.",                                  # unparseable -> feedback
        "1. pick(the red cube)\n2. place_on(blue plate)",               # pick fails: not next to it
        RuntimeError("server down"),                                    # backend failure -> feedback
        "1. navigate_to(the red cube)\n2. pick(the red cube)",          # only the first step runs
        "1. pick(the red cube)\n2. navigate_to(blue plate)",
        "1. place_on(blue plate)\n2. done()",
        "1. done()",
    ])
    ep = run_palme_episode(backend, skills, "put the red cube on the blue plate", observe=lambda: [FRAME])
    assert ep.finished and ep.reason == "done"
    assert skills.calls == [("pick", "the red cube"), ("navigate_to", "the red cube"), ("pick", "the red cube"),
                            ("place_on", "blue plate"), ("done",)]
    assert skills.support["red cube"] == "blue plate"
    assert "rejected: could not parse the plan" in backend.prompts[1]
    assert "pick('the red cube') -> FAILED: pick('the red cube') failed: red cube is out of reach" in backend.prompts[2]
    assert "rejected: backend error: RuntimeError: server down" in backend.prompts[3]
    assert ep.records[2].error.startswith("backend error")
    assert all(p.startswith(IMAGE_TOKEN + " <state>") for p in backend.prompts) and set(backend.n_images) == {1}
    assert "holding red cube" in backend.prompts[5]  # the state slot follows the world
    assert ep.executed_calls() == ["pick('the red cube')", "navigate_to('the red cube')", "pick('the red cube')",
                                   "place_on('blue plate')", "done()"]


def test_palme_budgets():
    skills = TableTopSkills()
    ep = run_palme_episode(Scripted(["1. look_around()"]), skills, "look", config=PalmeConfig(max_steps=3))
    assert not ep.finished and ep.reason == "step_budget" and ep.steps_executed == 3
    ep = run_palme_episode(Scripted(["no plan"]), skills, "x", config=PalmeConfig(max_model_calls=4))
    assert ep.reason == "model_call_budget" and ep.steps_executed == 0 and len(ep.records) == 4
    ep = run_palme_episode(Scripted(["1. navigate_to(red cube)\n2. look_around()\n3. done()"]), TableTopSkills(), "x",
                           config=PalmeConfig(steps_per_call=3))
    assert ep.finished and len(ep.records) == 1


# -- Octopus -----------------------------------------------------------------------------------------
def _response(code, targets=(TargetPredicate("on", ("red cube", "blue plate")), TargetPredicate("holding", ("nothing",)))):
    return format_response(OctopusResponse("The cube goes on the plate.", ("Pick the cube.", "Place it."), code, targets))


GOOD_CODE = ("def act(robot):\n    robot.navigate_to('red cube')\n    robot.pick('red cube')\n"
             "    robot.navigate_to('blue plate')\n    robot.place_on('blue plate')\n")


def test_octopus_loop_feeds_environment_feedback_into_the_next_round_and_records_rlef(tmp_path):
    skills = TableTopSkills()
    backend = Scripted([
        "Here is my plan: pick it up.",                                                   # parse error
        _response("import os\ndef act(robot):\n    os.system('rm -rf /')\n"),               # sandbox violation
        _response("def act(robot):\n    robot.pick('red cube')\n    robot.place_on('blue plate')\n"),  # pick fails
        _response("def act(robot):\n    robot.look_around()\n", targets=(TargetPredicate("on", ("red cube", "blue plate")),)),
        _response(GOOD_CODE),
    ])
    frames = iter(np.full((4, 6, 3), k, np.uint8) for k in range(10))
    ep = run_octopus_episode(backend, skills, "put the red cube on the blue plate", observe=lambda: [next(frames)],
                             dataset=RlefDatasetWriter(tmp_path), episode_id="ep/1", config=OctopusConfig(max_rounds=6))
    assert ep.success and len(ep.rounds) == 5
    fb = [r.feedback for r in ep.rounds]
    assert fb[0].startswith("could not parse the response") and "The code did not run" in fb[0]
    assert "rejected by the sandbox" in fb[1] and "imports are not allowed" in fb[1]
    assert "First failure: pick('red cube'): pick('red cube') failed: red cube is out of reach" in fb[2]
    assert "on(red cube, blue plate) does NOT hold" in fb[3] and "Task not complete." in fb[3]
    assert "on(red cube, blue plate) holds" in fb[4] and fb[4].endswith("Task complete.")
    assert "- pick('red cube'): ok: holding red cube [held: None -> red cube; support/red cube: floor -> gripper]" in fb[4]
    for k in range(1, 5):  # each prompt quotes the previous round's feedback
        assert ep.rounds[k - 1].feedback in backend.prompts[k]
    # nothing ran for the unparseable and the rejected responses; the failed pick stopped round 3's program
    assert skills.calls == [("pick", "red cube"), ("navigate_to", "red cube"), ("pick", "red cube"),
                            ("navigate_to", "blue plate"), ("place_on", "blue plate")]
    records = read_rlef_dataset(tmp_path)
    assert [r.round for r in records] == [0, 1, 2, 3, 4] and [r.reward for r in records] == [0, 0, 0, 0, 1.0]
    assert records[0].parse_errors and records[0].program is None
    assert records[1].program["error_kind"] == "violation" and records[1].program["calls"] == []
    assert records[2].program["calls"][0] == {"name": "pick", "args": ["red cube"], "kwargs": {}, "success": False,
                                              "feedback": "pick('red cube') failed: red cube is out of reach"}
    assert records[4].target_state == {"on(red cube, blue plate)": True, "holding(nothing)": True}
    assert records[4].response == _response(GOOD_CODE)
    assert records[3].images == ["images/ep_1_r3_0.png"] and np.all(records[3].load_images()[0] == 3)
    assert records[4].instruction == "put the red cube on the blue plate" and records[4].prompt == backend.prompts[4]


def test_octopus_round_budget_and_backend_failures(tmp_path):
    skills = TableTopSkills()
    ep = run_octopus_episode(Scripted([TimeoutError("slow")]), skills, "x", dataset=RlefDatasetWriter(tmp_path),
                             config=OctopusConfig(max_rounds=2))
    assert not ep.success and len(ep.rounds) == 2 and "backend error: TimeoutError: slow" in ep.rounds[0].feedback
    assert len(read_rlef_dataset(tmp_path)) == 2 and skills.calls == []


def test_rlef_reader_skips_a_truncated_last_line_and_rejects_corruption(tmp_path):
    w = RlefDatasetWriter(tmp_path)
    from vlm_agent.planners.rlef_dataset import RlefRecord

    w.append(RlefRecord("e", 0, "i", "p", "r"), [np.zeros((2, 2, 3), np.uint8)])
    with open(tmp_path / "rounds.jsonl", "a") as f:
        f.write('{"episode_id": "e", "rou')
    assert len(read_rlef_dataset(tmp_path)) == 1
    with open(tmp_path / "rounds.jsonl", "a") as f:
        f.write('\n{"episode_id": "e"}\n')
    with pytest.raises(ValueError, match="rounds.jsonl:2"):
        read_rlef_dataset(tmp_path)
    with pytest.raises(ValueError, match="RGB"):
        w.append(RlefRecord("e", 1, "i", "p", "r"), [np.zeros((2, 2), np.uint8)])
    assert read_rlef_dataset(tmp_path / "missing") == []


# -- on the simulator: oracle backends through the whole stack ------------------------------------------
@pytest.fixture(scope="module")
def env():
    from vlm_agent.sim.env import NavEnv, SimConfig

    e = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    yield e
    e.close()


@pytest.mark.parametrize("policy", ["palme", "octopus"])
def test_oracle_backends_score_one_on_ten_val_episodes(env, policy, tmp_path):
    result = evaluate_manip_planner(policy, 10, split="val", seed=0, env=env, dataset_dir=str(tmp_path))
    assert result["episodes"] == 10 and result["success_rate"] == 1.0, result["per_episode"]
    assert result["upper_bound"] and result["perception"] == "ground_truth (upper bound)"
    assert {e["task"] for e in result["per_episode"]} == {"place", "stack", "bring"}
    if policy == "palme":
        assert all(e["finished"] and e["calls"][-1] == "done()" for e in result["per_episode"])
    else:
        assert all(e["rounds"] == 1 for e in result["per_episode"])
        assert [r.reward for r in read_rlef_dataset(tmp_path)] == [1.0] * 10


def test_octopus_oracle_response_is_a_valid_program(env):
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.sandbox import check_program

    env.reset(make_episodes("manip", "val", 1, seed=0)[0])
    assert check_program(oracle_program_code(env)) == []
    assert OracleOctopusBackend(env)("", []).startswith("Explanation:")


def test_a_wrong_backend_scores_zero(env):
    result = evaluate_manip_planner("palme", 2, env=env, backend_factory=lambda e: Scripted(["1. done()"]))
    assert result["success_rate"] == 0.0 and all(e["finished"] for e in result["per_episode"])
