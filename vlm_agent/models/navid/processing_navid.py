"""NaVid's processor: prompt building, history subsampling and the grammar trie for constrained decoding.

Prompt (token level):  <s> {instruction} [HIS] <img> x (4 * k) [OBS] <img> x 64 [NAV] {answer} </s>
The answer is the action grammar's text, primitives joined by ", " (see planners/navid_grammar.py).
"""
from __future__ import annotations

import itertools

import numpy as np

from vlm_agent.actions import NavPrimitive

from ..embodied_vlm.processing_embodied_vlm import EmbodiedVLMProcessor

PRIMITIVE_SEPARATOR = ", "


def select_history(n_frames: int, cap: int, recent: int = 0) -> np.ndarray:
    """Indices of the history frames to feed, increasing: all when n_frames <= cap; else, with
    `recent` == 0, `cap` indices spread uniformly over [0, n_frames - 1] (first and latest always
    included); with `recent` = k > 0, the k latest frames plus `cap - k` indices spread uniformly over
    the older ones (a sparse long-term memory that always includes the first frame)."""
    if n_frames <= cap:
        return np.arange(n_frames)
    if recent > 0:
        recent = min(recent, cap)
        latest = np.arange(n_frames - recent, n_frames)
        n_old, k = n_frames - recent, cap - recent
        if k <= 0:
            return latest
        old = np.unique(np.round(np.linspace(0, n_old - 1, k)).astype(np.int64)) if k > 1 else np.array([0])
        return np.concatenate([old, latest])
    if cap == 1:
        return np.array([n_frames - 1])
    idx = np.round(np.linspace(0, n_frames - 1, cap)).astype(np.int64)
    return np.unique(idx)


def answer_text(primitives: list[NavPrimitive]) -> str:
    return PRIMITIVE_SEPARATOR.join(p.to_text() for p in primitives)


class NavidProcessor(EmbodiedVLMProcessor):
    """Tokenizer + image processor + prompt layout of `NavidModel` (saved with the model).

    Special tokens `[HIS]`, `[OBS]`, `[NAV]` (besides `<img>`) are looked up by name. The layout
    (tokens per current/history frame) and the action grammar (values, primitives per answer) are
    processor settings saved in `processor_config.json`; `from_config` copies them from a
    `NavidConfig` and `check_config` verifies a loaded pair agrees.
    """

    extra_special_tokens = ("[HIS]", "[OBS]", "[NAV]")
    token_fields = {**EmbodiedVLMProcessor.token_fields, "his_token_id": "[HIS]", "obs_token_id": "[OBS]", "nav_token_id": "[NAV]"}
    LAYOUT_FIELDS = ("current_tokens", "history_tokens_per_frame", "max_history_frames", "recent_history_frames", "forward_values_cm", "turn_values_deg", "max_primitives")

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, current_tokens: int = 64, history_tokens_per_frame: int = 4,
                 max_history_frames: int = 16, recent_history_frames: int = 0,
                 forward_values_cm: list[int] | None = None, turn_values_deg: list[int] | None = None, max_primitives: int = 3, **kwargs):
        self.current_tokens, self.history_tokens_per_frame = int(current_tokens), int(history_tokens_per_frame)
        self.max_history_frames, self.recent_history_frames = int(max_history_frames), int(recent_history_frames)
        self.forward_values_cm = list(forward_values_cm or [25])
        self.turn_values_deg = list(turn_values_deg or [30])
        self.max_primitives = int(max_primitives)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self._trie = None
        self._ids = None

    @classmethod
    def from_config(cls, image_processor, tokenizer, config) -> "NavidProcessor":
        """A processor with `config`'s layout and grammar (the model's settings are the source)."""
        return cls(image_processor, tokenizer, **cls.layout_of(config))

    @classmethod
    def layout_of(cls, config) -> dict:
        return {k: getattr(config, k) for k in cls.LAYOUT_FIELDS}

    def history_indices(self, n_frames: int, cap: int | None = None) -> np.ndarray:
        """Which of `n_frames` past frames feed the prompt (see `select_history`)."""
        return select_history(n_frames, cap or self.max_history_frames, self.recent_history_frames)

    def frames_to_pixel_values(self, frames: np.ndarray):
        """(N, S, S, 3) uint8 frames already at the model's size -> pixel_values (N, 3, S, S), with
        the processor's statistics (a vectorised fast path for training batches)."""
        import torch

        ip = self.image_processor
        if frames.ndim != 4 or frames.shape[1:3] != (ip.image_size, ip.image_size) or frames.dtype != np.uint8:
            raise ValueError(f"expected (N, {ip.image_size}, {ip.image_size}, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() * float(ip.rescale_factor)
        return (x - mean) / std

    def encode_instruction(self, instruction: str) -> list[int]:
        ids = self.tokenizer(instruction, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError("instruction tokenises to nothing")
        return ids

    def prompt_ids(self, instruction_ids: list[int], n_history: int) -> list[int]:
        """<s> instruction [HIS] <img> x (history tokens * n_history) [OBS] <img> x current [NAV]
        (no <s> for tokenizers without a BOS, e.g. Qwen2's)."""
        i = self.ids
        bos = [] if i["bos_token_id"] is None else [i["bos_token_id"]]
        return (
            bos + list(instruction_ids) + [i["his_token_id"]]
            + [i["image_token_id"]] * (n_history * self.history_tokens_per_frame)
            + [i["obs_token_id"]] + [i["image_token_id"]] * self.current_tokens + [i["nav_token_id"]]
        )

    def answer_ids(self, primitives: list[NavPrimitive]) -> list[int]:
        return self.tokenizer(answer_text(primitives), add_special_tokens=False).input_ids + [self.ids["eos_token_id"]]

    def candidate_answers(self) -> list[list[NavPrimitive]]:
        """Every answer the constrained decoder may produce: 1..max_primitives primitives from the
        configured values, `stop` only last."""
        moves = [NavPrimitive.forward(v) for v in self.forward_values_cm]
        moves += [NavPrimitive.turn_left(v) for v in self.turn_values_deg] + [NavPrimitive.turn_right(v) for v in self.turn_values_deg]
        answers = []
        for n in range(1, self.max_primitives + 1):
            for head in itertools.product(moves, repeat=n - 1):
                answers.append(list(head) + [NavPrimitive.stop()])
                answers.extend(list(head) + [m] for m in moves)
        return answers

    def grammar_trie(self) -> dict:
        """Token trie over `candidate_answers()` (each ending in EOS): {token: subtree}; {} marks the end.

        Built from whole-answer tokenisations, so it is exact whatever the BPE merges are."""
        if self._trie is None:
            trie: dict = {}
            for answer in self.candidate_answers():
                node = trie
                for t in self.answer_ids(answer):
                    node = node.setdefault(t, {})
            self._trie = trie
        return self._trie

    def first_token_bias(self, stop_bias: float) -> dict[int, float]:
        """{token: stop_bias} for the first decision of the trie: `stop` is the root child whose
        subtree is one unbranched chain to the end (a move branches: ", " may follow it)."""
        if not stop_bias:
            return {}
        out = {}
        for tok, node in self.grammar_trie().items():
            while node and len(node) == 1:
                (node,) = node.values()
            if not node:
                out[tok] = float(stop_bias)
        return out
