"""From an instruction's phrase ("the red cube", "blue plate", "table", "obj_3") to one scene entity.

A phrase is lower-cased, stripped of quotes, punctuation and articles, then read as an optional
colour plus an optional shape or furniture kind (with a few synonyms: block/box = cube,
sphere = ball, dish = plate, desk = table, cupboard = cabinet, couch = sofa). The entities that
match every given word are the candidates: exactly one resolves; none or several raise
`SkillError` with a message a planner can act on ("no object matches 'golden chalice'",
"'cube' matches 2 objects (red cube, blue cube); be more specific"). A scene id ("obj_3",
"table_0") always resolves to itself. Nothing here knows the simulator: callers pass the entities.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from vlm_agent.skills.api import SkillError

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
SHAPE_SYNONYMS = {
    "cube": "cube", "block": "cube", "box": "cube",
    "ball": "ball", "sphere": "ball",
    "cylinder": "cylinder", "can": "cylinder",
    "plate": "plate", "dish": "plate",
    "table": "table", "desk": "table",
    "cabinet": "cabinet", "cupboard": "cabinet",
    "sofa": "sofa", "couch": "sofa",
}
FILLER = {"the", "a", "an", "one", "object", "thing", "top", "of"}
MAX_PHRASE_CHARS = 80


@dataclass(frozen=True)
class SceneEntity:
    """Something a phrase can name: `name` is the scene id, `kind` "object" or a furniture kind
    ("table", "cabinet", "sofa"); objects have a colour and a shape."""

    name: str
    kind: str
    colour: str | None = None
    shape: str | None = None

    @property
    def label(self) -> str:
        """How an instruction names it: "red cube", "table"."""
        return f"{self.colour} {self.shape}" if self.kind == "object" else self.kind

    @property
    def category(self) -> str:
        return self.shape if self.kind == "object" else self.kind


def normalise_phrase(phrase: str) -> str:
    """Lower-case words of a phrase, without quotes, punctuation or surrounding whitespace."""
    text = phrase.strip().lower()
    text = re.sub(r"[\"'`.,;:!?()\[\]{}]", " ", text)
    return " ".join(text.split())


def resolve(phrase: str, entities: list[SceneEntity]) -> SceneEntity:
    """The one entity `phrase` names; SkillError (a planner-readable reason) otherwise."""
    if not isinstance(phrase, str):
        raise SkillError(f"an object must be named by a string, got {type(phrase).__name__}")
    if len(phrase) > MAX_PHRASE_CHARS:
        raise SkillError(f"object name too long ({len(phrase)} characters)")
    text = normalise_phrase(phrase)
    if not text:
        raise SkillError("empty object name")
    for e in entities:
        if text == e.name.lower():
            return e
    colour = category = None
    for word in text.split():
        if word in FILLER:
            continue
        if word in COLOURS and colour is None:
            colour = word
        elif word in SHAPE_SYNONYMS and category is None:
            category = SHAPE_SYNONYMS[word]
        else:
            raise SkillError(f"no object matches '{phrase}'")
    if colour is None and category is None:
        raise SkillError(f"no object matches '{phrase}'")
    matches = [e for e in entities if (colour is None or e.colour == colour) and (category is None or e.category == category)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SkillError(f"no object matches '{phrase}'")
    labels = ", ".join(sorted(e.label for e in matches))
    raise SkillError(f"'{phrase}' matches {len(matches)} objects ({labels}); be more specific")
