"""In-process evaluation of the manipulation planners' loops on the simulator's manip suite, the
scripted oracle backends, and the loops as `vlm-agent eval --suite manip --policy {palme,octopus}`
policies over any backend (`ManipPlannerPolicy`, `make_palme_policy`, `make_octopus_policy`).

`evaluate_manip_planner("palme" | "octopus", episodes=10, ...)` runs each episode through the
planner loop with `SimSkills` (ground-truth perception: the scores are upper bounds, and the result
says so) and scores it with the simulator's manipulation metric (`NavEnv.manip_metrics`). With the
default oracle backends it measures the loops, the parsers, the sandbox and the skills end to end,
not a model. `backend_factory(env)` plugs in another backend (a callable (prompt, images) -> text).

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


def evaluate_manip_planner(policy: str, episodes: int = 10, *, split: str = "val", seed: int = 0,
                           backend_factory: Callable | None = None, env=None, dataset_dir: str | None = None,
                           image_size: int = 48, palme_config: PalmeConfig | None = None,
                           octopus_config: OctopusConfig | None = None) -> dict:
    """Success rate of a planner loop over `episodes` manip episodes (see module docstring).

    Returns {"suite", "policy", "split", "seed", "episodes", "success_rate", "perception",
    "upper_bound", "per_episode": [{episode_id, task, success, ...}]}. `env` (a NavEnv) is reused if
    given, else one is made with `image_size` square images. `dataset_dir` (octopus only) receives
    the RLEF rounds.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown manipulation planner '{policy}' (choose from {', '.join(POLICIES)})")
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
    perception = None
    try:
        for ep in make_episodes("manip", split, episodes, seed=seed):
            env.reset(ep)
            skills = SimSkills(env)
            perception = skills.perception.label
            backend = factory(env)

            def observe():
                return [env.render()[0]]

            extra = run_manip_episode(policy, backend, env, skills, ep, observe, palme_config=palme_config,
                                      octopus_config=octopus_config, dataset=dataset)
            m = env.manip_metrics()
            per_episode.append({"episode_id": ep.episode_id, "task": ep.task, "instruction": ep.instruction,
                                "held_out": ep.held_out, "success": m["success"], **extra})
    finally:
        if own_env:
            env.close()
    n = len(per_episode)
    return {
        "suite": "manip", "policy": policy, "split": split, "seed": seed, "episodes": n,
        "success_rate": sum(e["success"] for e in per_episode) / n if n else float("nan"),
        "perception": perception, "upper_bound": perception is not None and "upper bound" in perception,
        "per_episode": per_episode,
    }


# -- the loops as `vlm-agent eval --suite manip --policy {palme,octopus}` policies --------------------
class ManipPlannerPolicy:
    """A PaLM-E or Octopus loop as an evaluation policy. It is closed-loop (it calls the skills
    itself, observing after each model call), so the evaluator calls `run_episode(env, skills,
    episode, observe)` instead of `act` (`vlm_agent.evaluation.rollouts`).

    `backend_factory(env)` gives the backend for an episode: a model backend is built once and
    returned for every episode; the privileged oracle backends read `env`.
    """

    def __init__(self, style: str, backend_factory: Callable, *, palme_config: PalmeConfig | None = None,
                 octopus_config: OctopusConfig | None = None, dataset_dir: str | None = None, name: str = ""):
        if style not in POLICIES:
            raise ValueError(f"unknown manipulation planner '{style}' (choose from {', '.join(POLICIES)})")
        self.style, self.backend_factory, self.name = style, backend_factory, name or style
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
        return run_manip_episode(self.style, self.backend_factory(env), env, skills, episode, observe, palme_config=self.palme_config,
                                 octopus_config=self.octopus_config, dataset=self.dataset)


def make_manip_planner_policy(style: str, suite: str = "manip", model_dir: str | None = None, env=None, backend: str | None = None,
                              remote_url: str = "", remote_model: str = "", device: str = "cpu", dataset_dir: str | None = None,
                              max_steps: int | None = None, max_model_calls: int | None = None, max_rounds: int | None = None,
                              **backend_kwargs) -> ManipPlannerPolicy:
    """The `style` loop over a backend `backend`: "builtin" (the project's model in `model_dir`),
    "transformers" (an image-text-to-text directory in `model_dir`), "remote" (an OpenAI-compatible
    server at `remote_url`) or "oracle" (the privileged scripted backend: an upper bound of the loop,
    parsers and skills, not a model score). Default: builtin when `model_dir` is given, remote when
    `remote_url` is; neither is a ValueError. Budgets: PaLM-E `max_steps` / `max_model_calls`, Octopus
    `max_rounds` (the loops' defaults otherwise). `backend_kwargs` go to `make_manip_backend`."""
    if suite != "manip":
        raise ValueError(f"the {style} planner runs the manip suite only (got --suite {suite})")
    kind = backend or ("builtin" if model_dir else "remote" if remote_url else None)
    if kind is None:
        raise ValueError(f"--policy {style} needs --model DIR (a saved {style} model), --backend remote with --remote-url, or --backend oracle")
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
                              name=f"{style}:{kind}")


def make_palme_policy(suite: str = "manip", model_dir: str | None = None, env=None, **kw) -> ManipPlannerPolicy:
    """`--policy palme`: see `make_manip_planner_policy`."""
    return make_manip_planner_policy("palme", suite, model_dir=model_dir, env=env, **kw)


def make_octopus_policy(suite: str = "manip", model_dir: str | None = None, env=None, **kw) -> ManipPlannerPolicy:
    """`--policy octopus`: see `make_manip_planner_policy`."""
    return make_manip_planner_policy("octopus", suite, model_dir=model_dir, env=env, **kw)
