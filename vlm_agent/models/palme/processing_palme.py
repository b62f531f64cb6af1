"""The PaLM-E processor: a planner prompt with `<img>` placeholders and a `<state>...</state>` slot,
its images and the robot state -> `input_ids`, `pixel_values`, `state_vectors`.

The manipulation loops (`vlm_agent.planners.palme_loop`) write prompts as text in which `<img>`
stands for each camera image in order and `<state>...</state>` holds the robot state as words. The
processor turns such a prompt into the core's multimodal sentence:

    text  "<img> <state>base at ...</state>\\nTask: put the red cube on the blue plate\\n..."
    ids   <s> <img> x grid**2  " "  <state>  "\\nTask: put the red cube ..." ...

* each `<img>` becomes `image_tokens` (= the vision grid size squared) `<img>` tokens, which the core
  fills with that image's projected patch features; the number of placeholders must equal the
  number of images;
* the `<state>...</state>` slot, whatever words it holds, becomes one `<state>` token, which the
  core fills with the projected state vector (`encode_state`, from the robot state dict, not the
  words);
* the text around them is tokenised with special-token strings read as plain text
  (`split_special_tokens`): an instruction containing "</s>" or "[NAV]" cannot end the prompt or
  inject a separator. (`<img>` and `<state>` are structure, so a stray one is a count error.)

Every malformed input raises `ValueError` with the reason (not text, too long, placeholders and
images disagree, unclosed or repeated state slot, state missing or not numbers, too many tokens).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
from transformers import BatchFeature

from ..embodied_vlm.processing_embodied_vlm import IMAGE_TOKEN, STATE_TOKEN, EmbodiedVLMProcessor
from .configuration_palme import PALME_STATE_DIM, STATE_FIELDS

STATE_CLOSE = "</state>"
MAX_PROMPT_CHARS = 100_000  # refused before tokenising (a hostile megabyte prompt costs nothing)
MAX_ABS_POSITION_M = 1.0e4
_STATE_SLOT = re.compile(re.escape(STATE_TOKEN) + r"(.*?)" + re.escape(STATE_CLOSE), re.S)
_PIECES = re.compile(re.escape(IMAGE_TOKEN) + "|" + re.escape(STATE_TOKEN) + r".*?" + re.escape(STATE_CLOSE), re.S)


class MultimodalSentenceProcessor(EmbodiedVLMProcessor):
    """Prompt text with `<img>` placeholders (and, when `uses_state`, one `<state>...</state>` slot)
    + images (+ robot state) -> the core's inputs. Shared by the PaLM-E and Octopus families.

    Layout (saved in `processor_config.json`, checked against the config by `check_config`):
        image_tokens: `<img>` tokens per image (the config's `grid_size ** 2`).
        max_images: most images per prompt.
        max_prompt_tokens: longest prompt, in tokens after expansion.
    A processor built without a layout (None fields, e.g. by `assemble_from_checkpoints`) takes its
    config's at `check_config`, which every loader runs; one with a layout must agree.
    """

    uses_state = False
    LAYOUT_FIELDS: tuple[str, ...] = ("image_tokens", "max_images", "max_prompt_tokens")

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_tokens: int | None = None,
                 max_images: int | None = None, max_prompt_tokens: int | None = None, **kwargs):
        self.image_tokens = None if image_tokens is None else int(image_tokens)
        self.max_images = None if max_images is None else int(max_images)
        self.max_prompt_tokens = None if max_prompt_tokens is None else int(max_prompt_tokens)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self._ids = None

    # -- layout ----------------------------------------------------------------------------------
    @classmethod
    def layout_of(cls, config) -> dict:
        """The layout `config` implies: `image_tokens` = grid_size ** 2, the other fields by name."""
        return {k: config.grid_size ** 2 if k == "image_tokens" else getattr(config, k) for k in cls.LAYOUT_FIELDS}

    @classmethod
    def from_config(cls, image_processor, tokenizer, config):
        """A processor with `config`'s layout (the model's settings are the source)."""
        return cls(image_processor, tokenizer, **cls.layout_of(config))

    def _require_layout(self) -> None:
        missing = [k for k in self.LAYOUT_FIELDS if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{type(self).__name__} has no layout ({', '.join(missing)}): build it with from_config(...) or run check_config(config)")

    # -- the robot state (overridden by PaLM-E) --------------------------------------------------
    def encode_state(self, state: Mapping) -> np.ndarray:
        raise ValueError(f"{type(self).__name__} has no state slot")

    # -- prompt -> inputs ------------------------------------------------------------------------
    def __call__(self, text=None, images=None, state: Mapping | None = None, return_tensors: str = "pt", **kwargs) -> BatchFeature:
        """One prompt -> BatchFeature with
            input_ids (1, L) int64, attention_mask (1, L) int64,
            pixel_values (N, 3, S, S) float32 when the prompt has N >= 1 images,
            state_vectors (1, state_dim) float32 when it has a state slot.
        `images`: RGB (H, W, 3) uint8 arrays (one array or a list), in placeholder order.
        `state`: the robot state dict (see `encode_state`); required exactly when the prompt has a slot.
        """
        import torch

        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)}")
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        self._require_layout()
        if state is not None and not self.uses_state:
            raise ValueError(f"{type(self).__name__} takes no robot state vector (its prompts carry the state as text)")
        pieces = self.split_prompt(text)
        images = _image_list(images)
        n_img = sum(p == ("img",) for p in pieces)
        if len(images) > self.max_images:
            raise ValueError(f"{len(images)} images given; this model takes at most {self.max_images} per prompt")
        if n_img != len(images):
            raise ValueError(f"the prompt has {n_img} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s) were given")
        has_slot = any(p == ("state",) for p in pieces)
        if has_slot and state is None:
            raise ValueError(f"the prompt has a {STATE_TOKEN}...{STATE_CLOSE} slot but no robot state was given")
        if state is not None and not has_slot:
            raise ValueError(f"a robot state was given but the prompt has no {STATE_TOKEN}...{STATE_CLOSE} slot")
        ids = self.expand(pieces)
        if len(ids) > self.max_prompt_tokens:
            raise ValueError(f"the prompt is {len(ids)} tokens after expansion; this model takes at most {self.max_prompt_tokens}")
        data = {"input_ids": torch.tensor([ids], dtype=torch.long), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        if images:
            data["pixel_values"] = self.pixel_values(images)
        if has_slot:
            data["state_vectors"] = torch.from_numpy(self.encode_state(state)[None])
        return BatchFeature(data)

    def split_prompt(self, text) -> list[tuple]:
        """Prompt text -> [("text", str) | ("img",) | ("state",)] in order. ValueError when the text is
        not a string, too long, or (with a state slot) its slot is unclosed, nested or repeated."""
        if not isinstance(text, str):
            raise ValueError(f"expected the prompt as text, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("empty prompt")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt too long ({len(text)} characters, limit {MAX_PROMPT_CHARS})")
        if not self.uses_state:
            parts = text.split(IMAGE_TOKEN)
            out: list[tuple] = []
            for k, part in enumerate(parts):
                if k:
                    out.append(("img",))
                if part:
                    out.append(("text", part))
            return out
        slots = _STATE_SLOT.findall(text)
        opened, closed = text.count(STATE_TOKEN), text.count(STATE_CLOSE)
        if len(slots) > 1:
            raise ValueError(f"the prompt has {len(slots)} {STATE_TOKEN}...{STATE_CLOSE} slots; at most one is allowed")
        if opened != len(slots) or closed != len(slots):
            raise ValueError(f"unbalanced state slot: {opened} {STATE_TOKEN} and {closed} {STATE_CLOSE} for {len(slots)} complete slot(s)")
        if slots and IMAGE_TOKEN in slots[0]:
            raise ValueError(f"an {IMAGE_TOKEN} placeholder inside the state slot")
        out, pos = [], 0
        for m in _PIECES.finditer(text):
            if m.start() > pos:
                out.append(("text", text[pos:m.start()]))
            out.append(("img",) if m.group() == IMAGE_TOKEN else ("state",))
            pos = m.end()
        if pos < len(text):
            out.append(("text", text[pos:]))
        return out

    def expand(self, pieces: Sequence[tuple]) -> list[int]:
        """Pieces -> token ids: <s> (if the tokenizer has one), text tokens (special-token strings read
        as plain text), `image_tokens` x <img> per image, one <state> per state slot."""
        i = self.ids
        ids = [] if i["bos_token_id"] is None else [i["bos_token_id"]]
        for piece in pieces:
            if piece[0] == "img":
                ids += [i["image_token_id"]] * self.image_tokens
            elif piece[0] == "state":
                ids.append(i["state_token_id"])
            else:
                ids += self.text_ids(piece[1])
        return ids

    def text_ids(self, text: str) -> list[int]:
        """Token ids of plain text: special-token strings in it ("</s>", "<img>") become ordinary tokens."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)

    # -- answers -----------------------------------------------------------------------------------
    def answer_ids(self, text: str) -> list[int]:
        """An answer's tokens + EOS (the training target after the prompt)."""
        return self.text_ids(text) + [self.ids["eos_token_id"]]

    def answer_trie(self, answers: Sequence[str], continuations: Sequence[str] = ()) -> dict:
        """Token trie for constrained decoding ({token: subtree}, {} = end): each of `answers` followed
        by EOS, and each of `continuations` without EOS (the decoder stops at its end and the caller
        may decode more). Built from whole-string tokenisations, so exact whatever the BPE merges are.
        ValueError when there is nothing to decode or an answer is a strict prefix of a continuation
        path (ambiguous end)."""
        if not answers and not continuations:
            raise ValueError("no candidate answers for the constrained decoder")
        trie: dict = {}
        ends: set[int] = set()  # ids of the nodes where a candidate ends (they must stay leaves)
        for text, is_answer in [(a, True) for a in answers] + [(c, False) for c in continuations]:
            toks = self.answer_ids(text) if is_answer else self.text_ids(text)
            if not toks:
                raise ValueError(f"candidate {text!r} tokenises to nothing")
            node = trie
            for t in toks:
                if id(node) in ends:
                    raise ValueError(f"candidate {text!r} continues where another candidate ends")
                node = node.setdefault(t, {})
            if node:
                raise ValueError(f"candidate {text!r} ends where another candidate continues")
            ends.add(id(node))
        return trie

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)


class PalmeProcessor(MultimodalSentenceProcessor):
    """Tokenizer + image processor + prompt layout + state encoding of `PalmeModel` (saved with it).

    See the module docstring for the prompt; `encode_state` for the state vector.
    """

    uses_state = True
    LAYOUT_FIELDS = ("image_tokens", "state_dim", "max_images", "max_prompt_tokens")

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_tokens: int | None = None, state_dim: int | None = None,
                 max_images: int | None = None, max_prompt_tokens: int | None = None, **kwargs):
        self.state_dim = None if state_dim is None else int(state_dim)
        super().__init__(image_processor, tokenizer, chat_template=chat_template, image_tokens=image_tokens, max_images=max_images,
                         max_prompt_tokens=max_prompt_tokens)

    def encode_state(self, state: Mapping) -> np.ndarray:
        """The robot state (a `SkillAPI.state()` dict) -> the state vector, float32 (7,):

            0 x_m              base position x, metres, in the odometry frame (`odom`; the simulator's
                               world frame), 0 when the pose is unknown
            1 y_m              base position y, metres, `odom`
            2 cos_yaw          cos of the base heading (yaw: radians, counter-clockwise from odom +x)
            3 sin_yaw          sin of the heading; (cos, sin) is continuous where yaw wraps at +-pi;
                               both 0 when the pose is unknown
            4 pose_known       1 when `base_pose` was given, else 0
            5 gripper_opening  1 = open, 0 = closed, or a normalised opening in [0, 1] from a real
                               gripper; 0.5 when unknown
            6 holding          1 when `held` names an object, else 0 (which object is in the prompt's
                               text: the feedback of the executed steps)

        Keys read: `base_pose` ([x m, y m, yaw rad] or None), `gripper` ("open" | "closed" | a number
        in [0, 1] | None | "unknown"), `held` (a label, or None / "" / "nothing"); others are ignored.
        ValueError on anything else (wrong types, non-finite numbers, |x| or |y| > 10 km).
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"the robot state must be a mapping, got {type(state).__name__}")
        vec = np.zeros(PALME_STATE_DIM, np.float32)
        pose = state.get("base_pose")
        if pose is not None:
            if isinstance(pose, (str, bytes)) or not isinstance(pose, Sequence) or len(pose) != 3:
                raise ValueError(f"state base_pose must be [x m, y m, yaw rad], got {pose!r:.80}")
            try:
                x, y, yaw = (float(v) for v in pose)
            except (TypeError, ValueError):
                raise ValueError(f"state base_pose must hold 3 numbers, got {pose!r:.80}") from None
            if not all(math.isfinite(v) for v in (x, y, yaw)) or max(abs(x), abs(y)) > MAX_ABS_POSITION_M:
                raise ValueError(f"state base_pose must be finite with |x|, |y| <= {MAX_ABS_POSITION_M:g} m, got {pose!r:.80}")
            vec[0:5] = (x, y, math.cos(yaw), math.sin(yaw), 1.0)
        vec[5] = _gripper_opening(state.get("gripper"))
        held = state.get("held")
        if held is not None and not isinstance(held, str):
            raise ValueError(f"state held must be an object label or None, got {type(held).__name__}")
        vec[6] = float(bool(held) and held.strip().lower() not in ("", "nothing", "none"))
        return vec


def _gripper_opening(g) -> float:
    if g is None or (isinstance(g, str) and g.strip().lower() == "unknown"):
        return 0.5
    if isinstance(g, str):
        word = g.strip().lower()
        if word == "open":
            return 1.0
        if word == "closed":
            return 0.0
        raise ValueError(f"state gripper must be 'open', 'closed', 'unknown' or a number in [0, 1], got {g[:40]!r}")
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= float(g) <= 1.0:
        raise ValueError(f"state gripper must be 'open', 'closed', 'unknown' or a number in [0, 1], got {g!r:.40}")
    return float(g)


def _image_list(images) -> list:
    if images is None:
        return []
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) and not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a list of RGB (H, W, 3) uint8 arrays, got {type(images).__name__}")
    return list(images)


__all__ = ["MultimodalSentenceProcessor", "PalmeProcessor", "STATE_FIELDS", "STATE_CLOSE"]
