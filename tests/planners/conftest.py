"""A tiny random NaVid checkpoint directory for planner/backend/serve tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_navid_dir(tmp_path_factory):
    from tests.helpers.tiny_navid import save_untrained_navid

    d = tmp_path_factory.mktemp("navid_tiny")
    return save_untrained_navid(d, seed=0, vision_layers=2, image_size=16, patch_size=2, text_layers=2, film_layers=2, max_history_frames=4)
