"""Tokenizer and image preprocessing of the embodied VLM core (numpy + Pillow, no torchvision).

The tokenizer is a tiny byte-level BPE trained with `tokenizers` (tens of milliseconds) and wrapped
in `PreTrainedTokenizerFast`, so it saves/loads as `tokenizer.json` like any transformers tokenizer.
Byte-level means any string tokenises (no unknown tokens), while words seen in training become
single tokens. Special tokens occupy fixed ids 0..N so configs can name them.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Fixed ids: configs refer to these (pad 0, bos 1, eos 2, ...).
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<img>", "<state>", "[HIS]", "[OBS]", "[NAV]"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID, IMAGE_ID, STATE_ID, HIS_ID, OBS_ID, NAV_ID = range(len(SPECIAL_TOKENS))

# Words every navigation tokenizer should know as whole tokens (the action grammar and common
# instruction words); training corpora add their own instructions on top.
BASE_CORPUS = [
    "move forward 25 cm", "move forward 50 cm", "move forward 75 cm", "move forward 100 cm",
    "turn left 30 degrees", "turn left 60 degrees", "turn left 90 degrees",
    "turn right 30 degrees", "turn right 60 degrees", "turn right 90 degrees", "stop",
    "move forward 25 cm, turn left 30 degrees, stop",
    "go to the red ball", "walk to the green box", "find the blue cylinder and stop next to it",
    "navigate to the yellow cube", "approach the purple sphere", "stop at the orange object",
    "red green blue yellow purple orange white black cyan magenta ball box cube cylinder sphere",
    "the a an to and next near in front of left right behind room door table chair",
]


def train_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512):
    """Train a byte-level BPE on `BASE_CORPUS + corpus` and wrap it as a `PreTrainedTokenizerFast`.

    Returns a tokenizer whose special ids are `PAD_ID`, `BOS_ID`, ... (see SPECIAL_TOKENS).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 bytes + specials")
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False + the ByteLevel regex splits on word boundaries, so the tokens of a
    # concatenation equal the concatenation of the words' tokens (the constrained decoder relies on it).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(BASE_CORPUS) + list(corpus or []), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t} did not get id {i}"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )


def load_tokenizer(directory: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(directory)
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.convert_tokens_to_ids(t) != i:
            raise ValueError(f"{directory}: tokenizer maps {t} to {tok.convert_tokens_to_ids(t)}, expected {i}")
    return tok


class ImagePreprocessor:
    """uint8 RGB frames (H, W, 3) -> float32 `pixel_values` (B, 3, S, S), normalised per channel.

    A non-square frame is first centre-cropped to a square of its shorter side: a 4:3 or 16:9
    camera then gives the model the same view geometry as the square renders it was trained on
    (same vertical field of view, nothing squashed). Resizes with Pillow bilinear only when the
    frame is not already S x S (the simulator can render at the model's size, which skips the
    resize). mean/std default to SigLIP's 0.5/0.5.
    """

    def __init__(self, image_size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        self.image_size = int(image_size)
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)

    def to_array(self, rgb: np.ndarray) -> np.ndarray:
        """One frame -> (3, S, S) float32. Raises ValueError on anything but an (H, W, 3) uint8 array."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            raise ValueError(f"expected an RGB frame of shape (H, W, 3) and dtype uint8, got shape {shape} dtype {dtype}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"empty RGB frame of shape {rgb.shape}")
        s = self.image_size
        h, w = rgb.shape[:2]
        if h != w:
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            rgb = rgb[top : top + side, left : left + side]
        if rgb.shape[:2] != (s, s):
            rgb = np.asarray(Image.fromarray(rgb).resize((s, s), Image.BILINEAR))
        x = (rgb.astype(np.float32) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, frames) -> torch.Tensor:
        """A frame or a list of frames -> `pixel_values` (B, 3, S, S) float32 tensor."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        return torch.from_numpy(np.stack([self.to_array(f) for f in frames]))
