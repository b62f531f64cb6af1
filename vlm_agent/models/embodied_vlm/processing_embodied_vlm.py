"""Processor of the embodied VLM core: tokenizer + image processor, saved with the model.

- `EmbodiedVLMImageProcessor` (a transformers `PilBackend` image processor: numpy + Pillow, never
  torchvision): uint8 RGB frames -> normalised `pixel_values`. Size, mean, std and the crop rule are
  saved (`processor_config.json`, and `preprocessor_config.json` for tools that read only that), so
  a CLIP tower gets CLIP's statistics and a SigLIP tower SigLIP's.
- `EmbodiedVLMProcessor` (a transformers `ProcessorMixin`): the two together plus the special tokens.
  Special tokens are looked up *by name* in whatever tokenizer is loaded (a tiny BPE trained here, or
  Qwen2's / Llama's own); each family names its own (`[HIS]` for NaVid, `[SEG]` for Sa2VA) in
  `extra_special_tokens`, and `add_special_tokens_to` adds the missing ones before the LM's embedding
  matrix is resized to match.
- `train_tokenizer`: a small byte-level BPE for the models this project trains from scratch.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_backends import PilBackend

IMAGE_TOKEN = "<img>"
STATE_TOKEN = "<state>"
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<s>", "</s>", "<unk>"

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


def train_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512, special_tokens: list[str] | tuple = ()):
    """Train a byte-level BPE on `BASE_CORPUS + corpus` and wrap it as a `PreTrainedTokenizerFast`.

    It has pad/bos/eos/unk, `<img>`, `<state>` and `special_tokens` (a family's own) as special
    tokens; callers look their ids up by name.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 bytes + specials")
    extra = [IMAGE_TOKEN, STATE_TOKEN] + [t for t in special_tokens if t not in (IMAGE_TOKEN, STATE_TOKEN)]
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False + the ByteLevel regex splits on word boundaries, so the tokens of a
    # concatenation equal the concatenation of the words' tokens (the constrained decoder relies on it).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN] + extra,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(BASE_CORPUS) + list(corpus or []), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN, additional_special_tokens=extra)


class EmbodiedVLMImageProcessor(PilBackend):
    """uint8 RGB frames (H, W, 3) -> float32 `pixel_values` (B, 3, S, S), normalised per channel.

    With `crop_to_square` (default) a non-square frame is first centre-cropped to a square of its
    shorter side: a 4:3 or 16:9 camera then gives the model the same view geometry as the square
    renders it was trained on (same vertical field of view, nothing squashed). Resizes with Pillow
    bilinear only when the frame is not already S x S (the simulator can render at the model's size,
    which skips the resize). Then x = (rgb * rescale_factor - mean) / std.
    """

    model_input_names = ["pixel_values"]
    size = {"height": 64, "width": 64}
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    rescale_factor = 1 / 255
    resample = Image.BILINEAR
    do_resize = True
    do_rescale = True
    do_normalize = True

    def __init__(self, crop_to_square: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.crop_to_square = bool(crop_to_square)
        if self.size.height != self.size.width:
            raise ValueError(f"image size must be square, got {self.size.height} x {self.size.width}")

    @property
    def image_size(self) -> int:
        return int(self.size.height)

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
        if h != w and self.crop_to_square:
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            rgb = rgb[top: top + side, left: left + side]
        if rgb.shape[:2] != (s, s):
            rgb = np.asarray(Image.fromarray(rgb).resize((s, s), self.resample))
        mean = np.asarray(self.image_mean, np.float32).reshape(1, 1, 3)
        std = np.asarray(self.image_std, np.float32).reshape(1, 1, 3)
        x = (rgb.astype(np.float32) * np.float32(self.rescale_factor) - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """A frame or a list of frames -> BatchFeature(pixel_values (B, 3, S, S))."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if isinstance(images, Image.Image):
            images = [images]
        arrays = [self.to_array(np.asarray(im.convert("RGB")) if isinstance(im, Image.Image) else im) for im in images]
        if not arrays:
            raise ValueError("no images given")
        return BatchFeature({"pixel_values": np.stack(arrays)}, tensor_type=return_tensors)


class EmbodiedVLMProcessor(ProcessorMixin):
    """Tokenizer + image processor of an embodied VLM, with its special tokens looked up by name.

    Families subclass it and list their own tokens in `extra_special_tokens`; `config_token_ids()`
    maps config fields to the tokenizer's ids for them (see `token_fields`).
    """

    image_token = IMAGE_TOKEN
    state_token = STATE_TOKEN
    extra_special_tokens: tuple[str, ...] = ()
    # config field -> token name (besides pad/bos/eos, read from the tokenizer's own roles)
    token_fields: dict[str, str] = {"image_token_id": IMAGE_TOKEN, "state_token_id": STATE_TOKEN}

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    # -- special tokens --------------------------------------------------------------------------
    @classmethod
    def special_tokens(cls) -> list[str]:
        return list(dict.fromkeys([cls.image_token, cls.state_token, *cls.extra_special_tokens]))

    @classmethod
    def add_special_tokens_to(cls, tokenizer) -> int:
        """Add this family's special tokens the tokenizer lacks; returns how many were added (the
        caller resizes the LM's embeddings to `len(tokenizer)`)."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in cls.special_tokens() if t not in vocab]
        if not missing:
            return 0
        return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)

    def token_id(self, token: str) -> int:
        """Id of a special token by name; ValueError if the tokenizer does not have it."""
        tid = self.tokenizer.get_vocab().get(token)
        if tid is None:
            raise ValueError(f"the tokenizer has no '{token}' token (add it with {type(self).__name__}.add_special_tokens_to)")
        return int(tid)

    def config_token_ids(self) -> dict[str, int | None]:
        """Config fields -> ids in this tokenizer: the family's placeholders and separators, and the
        tokenizer's own pad/bos/eos (pad falls back to eos, as for Qwen2/Llama without a pad token)."""
        tok = self.tokenizer
        eos = tok.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos token; the decoder needs one to end an answer")
        out: dict[str, int | None] = {name: self.token_id(token) for name, token in self.token_fields.items()}
        out.update(pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos, bos_token_id=tok.bos_token_id, eos_token_id=eos)
        return out

    def check_config(self, config) -> None:
        """Raise ValueError if `config` names other token ids than this tokenizer has, or the
        tokenizer does not fit the LM's vocabulary (a mismatched directory would decode garbage)."""
        if len(self.tokenizer) > config.text_config.vocab_size:
            raise ValueError(f"tokenizer has {len(self.tokenizer)} tokens but text_config.vocab_size is {config.text_config.vocab_size}")
        wrong = {k: (getattr(config, k, None), v) for k, v in self.config_token_ids().items() if getattr(config, k, None) != v}
        if wrong:
            detail = ", ".join(f"{k}: config {c} vs tokenizer {t}" for k, (c, t) in sorted(wrong.items()))
            raise ValueError(f"config and tokenizer disagree on special token ids ({detail})")
        if self.image_processor.image_size != config.image_size:
            raise ValueError(f"image processor size {self.image_processor.image_size} != vision_config.image_size {config.image_size}")
        # Layout settings (tokens per image, history, grammar...): a processor built without them
        # (e.g. by `assemble_from_checkpoints`) adopts the config's; one that has them must agree.
        expected = self.layout_of(config)
        for k, v in expected.items():
            if getattr(self, k, None) is None:
                setattr(self, k, v)
        wrong = {k: (getattr(self, k), v) for k, v in expected.items() if getattr(self, k) != v}
        if wrong:
            raise ValueError(f"processor and config disagree: {', '.join(f'{k}: processor {a} vs config {b}' for k, (a, b) in wrong.items())}")

    @classmethod
    def layout_of(cls, config) -> dict:
        """The layout settings `config` implies for this processor (none for the bare core)."""
        return {}

    @property
    def ids(self) -> dict[str, int | None]:
        """`config_token_ids()`, looked up once."""
        if getattr(self, "_ids", None) is None:
            self._ids = self.config_token_ids()
        return self._ids

    # -- inputs ----------------------------------------------------------------------------------
    def pixel_values(self, frames):
        """A frame or list of frames (H, W, 3) uint8 -> pixel_values (B, 3, S, S) float32 tensor."""
        return self.image_processor(frames, return_tensors="pt")["pixel_values"]

    def save_pretrained(self, save_directory, **kwargs):
        out = super().save_pretrained(save_directory, **kwargs)
        # Also the standalone image-processor file: tools that only read `preprocessor_config.json`
        # (the encoder export in vlm_agent.accel, transformers 4) find the statistics there.
        self.image_processor.save_pretrained(save_directory)
        return out


def load_processor(directory: str | os.PathLike):
    """The processor saved in a model directory, as the class registered for its config."""
    from transformers import AutoProcessor

    import vlm_agent.models  # noqa: F401  (registers the families with the Auto classes)

    return AutoProcessor.from_pretrained(str(directory))


__all__ = ["EmbodiedVLMImageProcessor", "EmbodiedVLMProcessor", "train_tokenizer", "load_processor", "IMAGE_TOKEN", "STATE_TOKEN", "BASE_CORPUS"]
