"""Evaluation policies by name, through a lazy registry (adding a policy = one line, no imports).

`POLICIES` maps a name to "module:factory". A factory is called as `factory(model_dir=..., **kw)`
plus the evaluation context `suite`, `env` (the `NavEnv`) and `seed` for each of those it names in
its signature (so a learned policy's factory need not accept them); it returns a policy for the suite:
* nav:   `reset(episode)`, `act(obs: NavObservation) -> NavPrimitive` (one primitive per env step);
* manip: `reset(episode)`, `act(obs) -> list[SkillCall] | str` (a skill program, run by the evaluator),
  or a closed-loop planner with `run_episode(env, skills, episode, observe) -> dict` (PaLM-E, Octopus);
* seg:   `reset(episode)`, `act(obs: SegObservation) -> (H, W) bool mask`.
Privileged policies (the oracles) use `env`; learned ones ignore it.
"""
from __future__ import annotations

import importlib
import inspect
import zlib

import numpy as np

from vlm_agent.actions import NavPrimitive

POLICIES: dict[str, str] = {
    "oracle": "vlm_agent.evaluation.policies:make_oracle_policy",
    "explorer": "vlm_agent.evaluation.policies:make_explorer_policy",
    "random": "vlm_agent.evaluation.policies:make_random_policy",
    "colour": "vlm_agent.evaluation.policies:make_colour_policy",
    "navid": "vlm_agent.planners.navid_policy:make_navid_policy",
    "sa2va": "vlm_agent.evaluation.seg_policies:make_sa2va_policy",
    "sa2va_official": "vlm_agent.evaluation.seg_policies:make_sa2va_official_policy",
    "palme": "vlm_agent.evaluation.manip_planners:make_palme_policy",
    "octopus": "vlm_agent.evaluation.manip_planners:make_octopus_policy",
}


def register_policy(name: str, target: str) -> None:
    """Add a policy at run time ("module:factory")."""
    if ":" not in target:
        raise ValueError(f"policy target must be 'module:factory', got '{target}'")
    POLICIES[name] = target


def make_policy(name: str, suite: str, model_dir: str | None = None, **kw):
    """Build policy `name` for `suite`; unknown names and broken imports raise ValueError with the reason."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy '{name}' (known: {', '.join(sorted(POLICIES))})")
    module_name, factory_name = POLICIES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"policy '{name}' needs {module_name}, which failed to import: {exc}") from exc
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise ValueError(f"policy '{name}': {module_name} has no factory '{factory_name}'")
    context = {"suite": suite, "env": kw.pop("env", None), "seed": kw.pop("seed", 0)}
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in context.items() if k in params}
    kwargs.update(kw)
    return factory(model_dir=model_dir, **kwargs)


# -- built-in policies ---------------------------------------------------------------------------
class RandomNavPolicy:
    """Uniformly random primitives, stopping with probability `p_stop` per step (a lower bound)."""

    def __init__(self, seed: int = 0, p_stop: float = 0.02):
        self.rng = np.random.default_rng(seed)
        self.p_stop = p_stop

    def reset(self, episode=None) -> None:
        if episode is not None:
            self.rng = np.random.default_rng(zlib.crc32(episode.episode_id.encode()))

    def act(self, obs) -> NavPrimitive:
        if self.rng.random() < self.p_stop:
            return NavPrimitive.stop()
        return [NavPrimitive.forward, NavPrimitive.turn_left, NavPrimitive.turn_right][int(self.rng.integers(3))]()


class OracleNavPolicy:
    def __init__(self, env):
        from vlm_agent.sim.oracle import NavOracle

        self.oracle = NavOracle(env)

    def reset(self, episode=None) -> None:
        self.oracle.reset(episode)

    def act(self, obs) -> NavPrimitive:
        return self.oracle.act(obs)


class OracleSegPolicy:
    """The ground-truth mask (checks the pipeline end to end; mIoU must be 1.0)."""

    def __init__(self, env):
        self.env = env

    def reset(self, episode=None) -> None:
        self.episode = episode

    def act(self, obs) -> np.ndarray:
        return self.env.object_mask(self.env.episode.goal_object)


class RandomSegPolicy:
    """A random axis-aligned box covering 2-10% of the image (a chance-level baseline)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, episode=None) -> None:
        if episode is not None:
            self.rng = np.random.default_rng(zlib.crc32(episode.episode_id.encode()))

    def act(self, obs) -> np.ndarray:
        h, w = obs.rgb.shape[:2]
        bh, bw = int(h * self.rng.uniform(0.15, 0.3)), int(w * self.rng.uniform(0.15, 0.3))
        y0, x0 = int(self.rng.integers(0, h - bh)), int(self.rng.integers(0, w - bw))
        mask = np.zeros((h, w), bool)
        mask[y0 : y0 + bh, x0 : x0 + bw] = True
        return mask


def make_oracle_policy(suite: str, model_dir=None, env=None, **kw):
    if env is None:
        raise ValueError("the oracle policy is privileged: pass env= (the evaluator does)")
    if suite == "nav":
        return OracleNavPolicy(env)
    if suite == "manip":
        from vlm_agent.evaluation.manip_oracle import ManipOracle

        return ManipOracle(env)
    if suite == "seg":
        return OracleSegPolicy(env)
    raise ValueError(f"oracle: unknown suite '{suite}'")


EXPLORER_PARAMS = ("view_range_m", "min_pixels", "min_gain_cells", "refresh_cells", "stop_radius_m", "room_hint")


def make_explorer_policy(suite: str, model_dir=None, env=None, device=None, **kw):
    """The observation-explainable expert (`vlm_agent.sim.explorer`): explores until it has seen the goal.
    `kw`: its settings (`--policy-param min_pixels=8`, one of `EXPLORER_PARAMS`); any other key is an error."""
    if env is None or suite != "nav":
        raise ValueError("the explorer policy is a privileged nav expert: --suite nav, and pass env= (the evaluator does)")
    unknown = sorted(k for k in kw if k not in EXPLORER_PARAMS)
    if unknown:
        raise ValueError(f"explorer: unknown setting(s) {', '.join(unknown)} (one of: {', '.join(EXPLORER_PARAMS)})")
    from vlm_agent.sim.explorer import ExplorerExpert

    return ExplorerExpert(env, **kw)


def make_random_policy(suite: str, model_dir=None, env=None, seed: int = 0, **kw):
    if suite == "nav":
        return RandomNavPolicy(seed)
    if suite == "seg":
        return RandomSegPolicy(seed)
    if suite == "manip":
        from vlm_agent.evaluation.manip_oracle import RandomManipPolicy

        return RandomManipPolicy(env, seed)
    raise ValueError(f"random: unknown suite '{suite}'")


def make_colour_policy(suite: str, model_dir=None, env=None, **kw):
    """A non-learned segmentation baseline: threshold pixels near the named colour."""
    if suite != "seg":
        raise ValueError("the colour baseline only supports --suite seg")
    from vlm_agent.evaluation.seg_baseline import ColourThresholdPolicy

    return ColourThresholdPolicy()
