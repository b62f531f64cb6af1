"""PaLM-E-style task planner on the embodied core: multimodal sentence -> the next skill step(s).

Data flow for one call (shapes for the defaults: 64 px, patch 8, grid 8, D LM width):
    image (3, 64, 64) -> vision tower -> (64, D_v) -> projector -> 64 `<img>` embeddings (64, D)
    robot state (7,)  -> state projector (Linear 7 -> D)      -> 1 `<state>` embedding (1, D)
    <s> <img>*64 <state> "Task: ..." "Done so far: ..." "Next steps:" -> causal LM -> "1. pick(red cube)"

Nothing here is new machinery: the core already writes image features and state vectors into their
placeholders (`embed_multimodal`) and decodes over a token trie (`generate_constrained`). The family
adds the state layout (`PalmeProcessor.encode_state`), the prompt layout (`PalmeProcessor`) and
`generate_steps`, which chains constrained decoding over one trie per plan step.
"""
from __future__ import annotations

import torch

from ..embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel
from .configuration_palme import PalmeConfig


class PalmeModel(EmbodiedVLMModel):
    config_class = PalmeConfig
    config: PalmeConfig

    @torch.no_grad()
    def generate_steps(self, input_ids: torch.LongTensor, step_tries: list[dict], pixel_values: torch.Tensor | None = None,
                       state_vectors: torch.Tensor | None = None, max_new_tokens: int | None = None) -> list[int]:
        """Constrained decoding of a plan, one step at a time, for one prompt (input_ids (1, L)).

        `step_tries[k]` is the token trie of step k + 1 (`PalmeProcessor.answer_trie`): its answers end
        with EOS (the plan ends there), its continuations with the step separator (decode the next
        step with the next trie). The images are encoded once for all steps. Returns the answer's
        token ids (ending with EOS unless `max_new_tokens`, default `config.max_new_tokens`, cut it).
        """
        if not step_tries:
            raise ValueError("no step tries to decode")
        budget = int(max_new_tokens or self.config.max_new_tokens)
        device = self.get_input_embeddings().weight.device
        feats = self.get_image_features(pixel_values.to(device)) if pixel_values is not None else None
        ids = input_ids.to(device)
        out: list[int] = []
        for trie in step_tries:
            if len(out) >= budget:
                break
            produced = self.generate_constrained(ids, trie, image_features=feats, state_vectors=state_vectors, max_new_tokens=budget - len(out))
            out += produced
            if not produced or produced[-1] == self.config.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([produced], dtype=ids.dtype, device=device)], 1)
        return out
