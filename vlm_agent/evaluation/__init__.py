"""Evaluation: policies run against the simulator (plain Python, no ROS).

`rollouts.evaluate` scores a policy on the nav / manip / seg suites (manipulation programs run
through the agent's `SimSkills`), `policies` is the lazy policy registry behind `vlm-agent eval`,
`manip_oracle` and `seg_baseline` are the privileged / non-learned baselines, and `manip_planners`
scores the PaLM-E and Octopus planner loops. It sits above the simulator, the skills and the
planners, which is why none of this lives in `vlm_agent.sim`.
"""
