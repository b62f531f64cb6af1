"""Closed-loop model selection: a checkpoint is judged by driving the simulator, not by per-step accuracy.

`closed_loop_eval(model_dir, ...)` runs the NaVid policy of a checkpoint directory on validation
episodes of the nav suite and returns success rate and SPL; the trainer calls it on its working copy
and keeps the best checkpoint (SR first, then SPL).
"""
from __future__ import annotations

import numpy as np


def closed_loop_eval(model_dir: str, n_episodes: int, max_steps: int, image_size: int, split: str = "val", seed: int = 0,
                     progress: bool = False, device: str = "cpu") -> dict:
    """Success rate / SPL of the checkpoint in `model_dir` over `n_episodes` sim episodes, the model on
    `device`. Episodes end at the policy's stop or at `max_steps` (an unfinished one is not counted as
    stopped: `assume_stopped=False`)."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from tqdm import tqdm

    from vlm_agent.planners.navid_policy import make_navid_policy
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    policy = make_navid_policy(model_dir, device=device)
    env = NavEnv(SimConfig(width=image_size, height=image_size, render_depth=True, max_steps=max_steps))
    sr, spl = [], []
    for ep in tqdm(make_episodes("nav", split, n_episodes, seed), desc="closed-loop val", disable=not progress, leave=False):
        obs = env.reset(ep)
        policy.reset(ep)
        while not env.done and env.step_count < env.max_steps:
            obs = env.step(policy.act(obs))
        m = env.metrics(assume_stopped=False)
        sr.append(float(m.get("success", 0.0)))
        spl.append(float(m.get("spl", 0.0)))
    env.close()
    return {"success_rate": float(np.mean(sr)), "spl": float(np.mean(spl)), "episodes": n_episodes, "parse_errors": policy.parse_errors}
