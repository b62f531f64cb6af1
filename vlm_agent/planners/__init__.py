"""Policy logic: prompts, action grammars and parsers, replanning loops (no ROS).

Navigation (NaVid style): `navid_grammar` (primitive grammar + strict parser), `navid_prompt`,
`navid_policy`, `navid` (the planner), `planner_loop`, `backends` (built-in / transformers /
OpenAI-compatible), `openai_server` (`vlm-agent serve`); the primitives themselves are
`vlm_agent.actions`.
Manipulation: `palme_grammar` + `palme_loop` (PaLM-E-style numbered skill steps, closed-loop
replanning), `octopus_format` + `octopus_loop` (explanation, subtasks, sandboxed code, target state,
environment feedback), `rlef_dataset` (every Octopus round, for RLEF fine-tuning); their closed-loop
evaluation on the simulator is `vlm_agent.evaluation.manip_planners`.
"""
