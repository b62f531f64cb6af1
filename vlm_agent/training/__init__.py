"""Training, apart from the model folders (as LeRobot keeps `scripts/train.py` apart from `policies/`).

`data` (the shard format: `load_shards`, `expand_shards`), `collect` (sharded, resumable expert
collection, DAgger with a learner), `navid` (the NaVid behaviour-cloning trainer: `NavidTrainConfig`,
`EpisodeBatcher`, `train`), `selection` (closed-loop model selection on the simulator). Models
(`vlm_agent.models`) never import the simulator; this package joins the two. `device` ("cpu",
"cuda", "cuda:N", "mps") places the model and every batch (`vlm_agent.devices`).
"""
