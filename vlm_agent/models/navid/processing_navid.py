"""NaVid prompt building, history subsampling and the grammar trie for constrained decoding.

Prompt (token level):  <s> {instruction} [HIS] <img> x (4 * k) [OBS] <img> x 64 [NAV] {answer} </s>
The answer is the action grammar's text, primitives joined by ", " (see planners/navid_grammar.py).
"""
from __future__ import annotations

import itertools

import numpy as np

from vlm_agent.actions import NavPrimitive

from ..embodied_vlm.processing_embodied_vlm import ImagePreprocessor
from .configuration_navid import NavidConfig

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


class NavidProcessor:
    """Tokenizer + image preprocessing + prompt layout for `NavidModel`."""

    def __init__(self, tokenizer, config: NavidConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.image_processor = ImagePreprocessor(config.image_size)
        if len(tokenizer) > config.text_config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but text_config.vocab_size is {config.text_config.vocab_size}")
        self._trie = None

    def encode_instruction(self, instruction: str) -> list[int]:
        ids = self.tokenizer(instruction, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError("instruction tokenises to nothing")
        return ids

    def prompt_ids(self, instruction_ids: list[int], n_history: int) -> list[int]:
        c = self.config
        return (
            [c.bos_token_id] + list(instruction_ids) + [c.his_token_id]
            + [c.image_token_id] * (n_history * c.history_tokens_per_frame)
            + [c.obs_token_id] + [c.image_token_id] * c.current_tokens + [c.nav_token_id]
        )

    def answer_ids(self, primitives: list[NavPrimitive]) -> list[int]:
        return self.tokenizer(answer_text(primitives), add_special_tokens=False).input_ids + [self.config.eos_token_id]

    def candidate_answers(self) -> list[list[NavPrimitive]]:
        """Every answer the constrained decoder may produce: 1..max_primitives primitives from the
        configured values, `stop` only last."""
        c = self.config
        moves = [NavPrimitive.forward(v) for v in c.forward_values_cm]
        moves += [NavPrimitive.turn_left(v) for v in c.turn_values_deg] + [NavPrimitive.turn_right(v) for v in c.turn_values_deg]
        answers = []
        for n in range(1, c.max_primitives + 1):
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
