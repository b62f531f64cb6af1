"""In-process evaluation of the manipulation planners' loops on the simulator's manip suite, the
scripted oracle backends, and the loops as `vlm-agent eval --suite manip --policy {palme,octopus}`
policies over any backend (`ManipPlannerPolicy`, `make_palme_policy`, `make_octopus_policy`).

`evaluate_manip_planner("palme" | "octopus", episodes=10, ...)` runs each episode through the
planner loop with `SimSkills` and scores it with the simulator's manipulation metric
(`NavEnv.manip_metrics`). Perception: `perception="ground_truth"` (the default; the scores are upper
bounds, and the result says so) or `"segmenter"` (`skills.segmenter_perception.SegmenterPerception`:
objects located by a referring segmenter, Sa2VA from `seg_model_dir` or any `segmenter_factory(env)`,
on the robot's camera with depth back-projection; furniture from the map; not an upper bound).
With the default oracle backends it measures the loops, the parsers, the sandbox and the skills end
to end, not a model. `backend_factory(env)` plugs in another backend (a callable (prompt, images) -> text).

The oracle backends are privileged (they read the episode's ground truth through `env`) and
stateless: each reply is computed from the world's current state, like `NavOracle`.
"""
from __future__ import annotations

from typing import Callable

from vlm_agent.planners.octopus_format import OctopusResponse, TargetPredicate, format_response
from vlm_agent.planners.octopus_loop import OctopusConfig, run_octopus_episode
from vlm_agent.planners.palme_grammar import format_plan
from vlm_agent.planners.palme_loop import PalmeConfig, run_palme_episode
from vlm_agent.skills.api import SkillCall

POLICIES = ("palme", "octopus")
PERCEPTIONS = ("ground_truth", "segmenter")


def _oracle_labels(env) -> tuple[str, str]:
    """(object to move, destination) named as the instruction names them."""
    world = env.world
    target, dest = env.episode.goal_objects[:2]

    def label(name):
        try:
            return world.object(name).label
        except KeyError:
            return world.furniture_piece(name).kind

    return label(target), label(dest)


def oracle_remaining_calls(env) -> list[SkillCall]:
    """The rest of the task from the world's current state, objects named as the instruction names
    them: go to the object unless next to it, pick it (unless held), go to the destination unless
    next to it, place; `done()` last. Stateless: it labels any state a planner (or a perturbed
    expert) reaches, e.g. after a failed or wrong step."""
    target, dest = env.episode.goal_objects[:2]
    t, d = _oracle_labels(env)
    steps = []
    if not (env.held is None and env.world.object(target).support == dest):
        if env.held != target:
            if not _near(env, target):
                steps.append(SkillCall("navigate_to", (t,)))
            steps.append(SkillCall("pick", (t,)))
        if env.held != target or not _near(env, dest):
            steps.append(SkillCall("navigate_to", (d,)))
        steps.append(SkillCall("place_on", (d,)))
    steps.append(SkillCall("done"))
    return steps


def program_code(calls: list[SkillCall]) -> str:
    """Skill calls as sandbox code: `def act(robot):` with one `robot.<skill>('<object>')` line each."""
    lines = [f"    robot.{c.name}({', '.join(repr(str(a)) for a in c.args)})" for c in calls]
    return "def act(robot):\n" + "\n".join(lines) + "\n"


def oracle_program_code(env) -> str:
    """The manipulation oracle's skill program from the current state as sandbox code."""
    return program_code(oracle_remaining_calls(env))


class OraclePalmeBackend:
    """The remaining plan from the world's current state (`oracle_remaining_calls`)."""

    def __init__(self, env):
        self.env = env

    def __call__(self, prompt: str, images) -> str:
        return format_plan(oracle_remaining_calls(self.env))


def _near(env, name: str) -> bool:
    """The base is where navigate_to(name) leaves it (within 12 cm of the standoff)."""
    from vlm_agent.skills.sim_skills import REACH_STANDOFF_M, TABLE_STANDOFF_M

    standoff = REACH_STANDOFF_M if name in {o.name for o in env.world.objects} else TABLE_STANDOFF_M
    return env.distance_to(name) <= standoff + 0.12


class OracleOctopusBackend:
    """An Octopus response whose code is the oracle program and whose target state is
    on(object, destination) with an empty gripper."""

    def __init__(self, env):
        self.env = env

    def __call__(self, prompt: str, images) -> str:
        t, d = _oracle_labels(self.env)
        return format_response(OctopusResponse(
            explanation=f"The {t} has to end up on the {d}.",
            subtasks=(f"Go to the {t} and pick it up.", f"Go to the {d} and put the {t} on it."),
            code=oracle_program_code(self.env),
            target_state=(TargetPredicate("on", (t, d)), TargetPredicate("holding", ("nothing",))),
        ))


ORACLE_BACKENDS = {"palme": OraclePalmeBackend, "octopus": OracleOctopusBackend}


def run_manip_episode(policy: str, backend, env, skills, episode, observe, *, palme_config: PalmeConfig | None = None,
                      octopus_config: OctopusConfig | None = None, dataset=None) -> dict:
    """One manip episode through the `policy` loop with `backend`, on `env` (already reset to
    `episode`) and its `skills`. Returns the loop's per-episode fields: PaLM-E `finished`, `reason`,
    `steps`, `calls`, `model_calls`, `parse_errors`; Octopus `rounds`, `feedback`, `parse_errors`;
    both `skill_calls`."""
    if policy == "palme":
        out = run_palme_episode(backend, skills, episode.instruction, observe=observe, config=palme_config)
        return {"finished": out.finished, "reason": out.reason, "steps": out.steps_executed, "calls": out.executed_calls(),
                "model_calls": len(out.records), "parse_errors": sum(r.error is not None for r in out.records), "skill_calls": out.steps_executed}
    out = run_octopus_episode(backend, skills, episode.instruction, observe=observe,
                              success_fn=lambda: bool(env.manip_metrics()["success"]), dataset=dataset,
                              episode_id=episode.episode_id, config=octopus_config)
    return {"rounds": len(out.rounds), "feedback": [r.feedback for r in out.rounds], "parse_errors": sum(bool(r.parse_errors) for r in out.rounds),
            "skill_calls": sum(len(r.program.calls) for r in out.rounds if r.program is not None)}


def make_perception_factory(perception: str = "ground_truth", *, seg_model_dir: str | None = None, seg_backend: str = "sa2va",
                            segmenter_factory: Callable | None = None, seg_device: str = "cpu", seg_config=None):
    """`factory(env) -> Perception` for each episode, or None for "ground_truth" (SimSkills' default).
    "segmenter": a `SegmenterPerceptionFactory` over `segmenter_factory(env)` when given, else the
    `seg_backend` segmenter ("sa2va" from `seg_model_dir`, "oracle" = ground-truth masks, privileged)
    on `seg_device`; `seg_config` a `SegmenterPerceptionConfig`. ValueError for anything else."""
    if perception not in PERCEPTIONS:
        raise ValueError(f"unknown perception '{perception}' (choose from {', '.join(PERCEPTIONS)})")
    if perception == "ground_truth":
        return None
    from vlm_agent.skills.segmenter_perception import SegmenterPerceptionFactory, make_segmenter_factory

    if segmenter_factory is None:
        segmenter_factory = make_segmenter_factory(seg_backend, seg_model_dir, device=seg_device)
    return SegmenterPerceptionFactory(segmenter_factory, seg_config)


def perception_report(perception) -> dict:
    """Per-episode fields about the provider: "perception" (label), "upper_bound", and for a segmenter
    provider "locate" (`summarise_locates` of its calls: found in view / after turns / not found,
    centroid error) and "locate_calls" (every call's `LocateRecord` as a dict, in order: phrase,
    outcome, associated object, centroid error), so a failed episode shows which locate went wrong."""
    out = {"perception": perception.label, "upper_bound": bool(getattr(perception, "upper_bound", False))}
    summary = getattr(perception, "summary", None)
    if callable(summary):
        out["locate"] = summary()
        out["locate_calls"] = [r.to_dict() for r in getattr(perception, "records", ())]
    return out


def evaluate_manip_planner(policy: str, episodes: int = 10, *, split: str = "val", seed: int = 0,
                           backend_factory: Callable | None = None, env=None, dataset_dir: str | None = None,
                           image_size: int = 48, palme_config: PalmeConfig | None = None,
                           octopus_config: OctopusConfig | None = None, perception: str = "ground_truth",
                           seg_model_dir: str | None = None, seg_backend: str = "sa2va", segmenter_factory: Callable | None = None,
                           seg_device: str = "cpu", seg_config=None) -> dict:
    """Success rate of a planner loop over `episodes` manip episodes (see module docstring).

    Returns {"suite", "policy", "split", "seed", "episodes", "success_rate", "perception",
    "upper_bound", "per_episode": [{episode_id, task, success, ...}]}, and with
    `perception="segmenter"` also "locate" (the locate calls of all episodes, `merge_locate_summaries`)
    and a per-episode "locate". `env` (a NavEnv) is reused if given, else one is made with
    `image_size` square images. `dataset_dir` (octopus only) receives the RLEF rounds. Segmenter
    options: see `make_perception_factory` (`segmenter_factory(env)` is called once).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown manipulation planner '{policy}' (choose from {', '.join(POLICIES)})")
    perception_factory = make_perception_factory(perception, seg_model_dir=seg_model_dir, seg_backend=seg_backend,
                                                 segmenter_factory=segmenter_factory, seg_device=seg_device, seg_config=seg_config)
    from vlm_agent.planners.rlef_dataset import RlefDatasetWriter
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.sim_skills import SimSkills

    own_env = env is None
    if own_env:
        env = NavEnv(SimConfig(width=image_size, height=image_size, render_depth=False))
    factory = backend_factory or ORACLE_BACKENDS[policy]
    dataset = RlefDatasetWriter(dataset_dir) if dataset_dir and policy == "octopus" else None
    per_episode = []
    report: dict = {}
    try:
        for ep in make_episodes("manip", split, episodes, seed=seed):
            env.reset(ep)
            skills = SimSkills(env, perception=perception_factory(env) if perception_factory is not None else None)
            backend = factory(env)

            def observe():
                return [env.render()[0]]

            extra = run_manip_episode(policy, backend, env, skills, ep, observe, palme_config=palme_config,
                                      octopus_config=octopus_config, dataset=dataset)
            m = env.manip_metrics()
            report = perception_report(skills.perception)
            per_episode.append({"episode_id": ep.episode_id, "task": ep.task, "instruction": ep.instruction,
                                "held_out": ep.held_out, "success": m["success"], "goal_objects": list(ep.goal_objects[:2]), **extra,
                                **{k: report[k] for k in ("locate", "locate_calls") if k in report}})
    finally:
        if perception_factory is not None:
            perception_factory.close()
        if own_env:
            env.close()
    n = len(per_episode)
    out = {
        "suite": "manip", "policy": policy, "split": split, "seed": seed, "episodes": n,
        "success_rate": sum(e["success"] for e in per_episode) / n if n else float("nan"),
        "perception": report.get("perception"), "upper_bound": report.get("upper_bound", False),
        "per_episode": per_episode,
    }
    if perception_factory is not None:
        from vlm_agent.skills.segmenter_perception import merge_locate_summaries

        out["locate"] = merge_locate_summaries(e.get("locate") for e in per_episode)
    return out


# -- the loops as `vlm-agent eval --suite manip --policy {palme,octopus}` policies --------------------
class ManipPlannerPolicy:
    """A PaLM-E or Octopus loop as an evaluation policy. It is closed-loop (it calls the skills
    itself, observing after each model call), so the evaluator calls `run_episode(env, skills,
    episode, observe)` instead of `act` (`vlm_agent.evaluation.rollouts`).

    `backend_factory(env)` gives the backend for an episode: a model backend is built once and
    returned for every episode; the privileged oracle backends read `env`. `perception_factory(env)`
    (`make_perception_factory`), when given, replaces the evaluator's skills' perception each episode
    (e.g. the segmenter instead of ground truth); every episode reports "perception", "upper_bound"
    and, for the segmenter, "locate".
    """

    def __init__(self, style: str, backend_factory: Callable, *, palme_config: PalmeConfig | None = None,
                 octopus_config: OctopusConfig | None = None, dataset_dir: str | None = None, name: str = "",
                 perception_factory: Callable | None = None):
        if style not in POLICIES:
            raise ValueError(f"unknown manipulation planner '{style}' (choose from {', '.join(POLICIES)})")
        self.style, self.backend_factory, self.name = style, backend_factory, name or style
        self.perception_factory = perception_factory
        self.palme_config, self.octopus_config = palme_config, octopus_config
        self.dataset = None
        if dataset_dir and style == "octopus":
            from vlm_agent.planners.rlef_dataset import RlefDatasetWriter

            self.dataset = RlefDatasetWriter(dataset_dir)
        self.episode = None

    def reset(self, episode=None) -> None:
        self.episode = episode

    def act(self, obs=None):
        raise RuntimeError(f"the {self.style} planner is closed-loop: the evaluator calls run_episode(env, skills, episode, observe)")

    def run_episode(self, env, skills, episode, observe) -> dict:
        if self.perception_factory is not None:
            skills.perception = self.perception_factory(env)
        out = run_manip_episode(self.style, self.backend_factory(env), env, skills, episode, observe, palme_config=self.palme_config,
                                octopus_config=self.octopus_config, dataset=self.dataset)
        return {**out, **perception_report(skills.perception)}

    def close(self) -> None:
        close = getattr(self.perception_factory, "close", None)
        if callable(close):
            close()


def make_manip_planner_policy(style: str, suite: str = "manip", model_dir: str | None = None, env=None, backend: str | None = None,
                              remote_url: str = "", remote_model: str = "", device: str = "cpu", dataset_dir: str | None = None,
                              max_steps: int | None = None, max_model_calls: int | None = None, max_rounds: int | None = None,
                              perception: str = "ground_truth", seg_model_dir: str | None = None, seg_backend: str = "sa2va",
                              seg_params: dict | None = None, **backend_kwargs) -> ManipPlannerPolicy:
    """The `style` loop over a backend `backend`: "builtin" (the project's model in `model_dir`),
    "transformers" (an image-text-to-text directory in `model_dir`), "remote" (an OpenAI-compatible
    server at `remote_url`) or "oracle" (the privileged scripted backend: an upper bound of the loop,
    parsers and skills, not a model score). Default: builtin when `model_dir` is given, remote when
    `remote_url` is; neither is a ValueError. Budgets: PaLM-E `max_steps` / `max_model_calls`, Octopus
    `max_rounds` (the loops' defaults otherwise). Perception: "ground_truth" (the evaluator's skills,
    an upper bound) or "segmenter" (`seg_backend` "sa2va" from `seg_model_dir`, or "oracle"; on
    `device`; see `make_perception_factory`; `seg_params`: `SegmenterPerceptionConfig` fields).
    `backend_kwargs` go to `make_manip_backend`."""
    if suite != "manip":
        raise ValueError(f"the {style} planner runs the manip suite only (got --suite {suite})")
    kind = backend or ("remote" if remote_url and not model_dir else "builtin")
    if kind == "builtin" and not model_dir:
        from vlm_agent.models.registry import default_checkpoint_dir

        model_dir = default_checkpoint_dir(style)  # the shipped checkpoints/<style>_tiny
    if seg_params and perception != "segmenter":
        raise ValueError("segmenter perception settings apply to --perception segmenter only")
    seg_config = None
    if seg_params:
        from vlm_agent.skills.segmenter_perception import SegmenterPerceptionConfig

        seg_config = SegmenterPerceptionConfig(**seg_params)
    perception_factory = make_perception_factory(perception, seg_model_dir=seg_model_dir, seg_backend=seg_backend, seg_device=device,
                                                 seg_config=seg_config)
    palme_config = PalmeConfig(**{k: v for k, v in (("max_steps", max_steps), ("max_model_calls", max_model_calls)) if v is not None})
    octopus_config = OctopusConfig(**({"max_rounds": max_rounds} if max_rounds is not None else {}))
    if kind == "oracle":
        factory = ORACLE_BACKENDS[style]
    else:
        from vlm_agent.planners.manip_backends import make_manip_backend

        built = make_manip_backend(style, kind, model_dir=model_dir, base_url=remote_url or None, remote_model=remote_model, device=device,
                                   **backend_kwargs)

        def factory(env):
            return built

    return ManipPlannerPolicy(style, factory, palme_config=palme_config, octopus_config=octopus_config, dataset_dir=dataset_dir,
                              name=f"{style}:{kind}", perception_factory=perception_factory)


def make_palme_policy(suite: str = "manip", model_dir: str | None = None, env=None, **kw) -> ManipPlannerPolicy:
    """`--policy palme`: see `make_manip_planner_policy`."""
    return make_manip_planner_policy("palme", suite, model_dir=model_dir, env=env, **kw)


def make_octopus_policy(suite: str = "manip", model_dir: str | None = None, env=None, **kw) -> ManipPlannerPolicy:
    """`--policy octopus`: see `make_manip_planner_policy`."""
    return make_manip_planner_policy("octopus", suite, model_dir=model_dir, env=env, **kw)
