"""The film_cnn vision stem, recent + sparse history and the per-sample loss of the NaVid model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm_agent.actions import ACTIONS
from vlm_agent.models.navid.modeling_navid import NavidModel
from vlm_agent.models.navid.processing_navid import NavidProcessor, select_history
from vlm_agent.models.registry import make_config
from vlm_agent.training.navid import EpisodeBatcher


def _cnn_config(**extra):
    kw = dict(vision_stem="film_cnn", cnn_channels=[8], current_grid_size=4, max_history_frames=4, recent_history_frames=2)
    kw.update(extra)
    return make_config("navid", vocab_size=512, image_size=16, patch_size=4, vision_hidden=16, text_hidden=32, text_layers=1, heads=4, **kw)


@pytest.fixture
def cnn_navid():
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model

    torch.manual_seed(0)
    model, proc = new_model("navid", train_tokenizer(), image_size=16, patch_size=4, vision_hidden=16, text_hidden=32, text_layers=1, heads=4,
                            vision_stem="film_cnn", cnn_channels=[8], current_grid_size=4, max_history_frames=4, recent_history_frames=2)
    return model.eval(), proc


def _dataset(n_episodes=2, length=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.integers(0, 255, (n_episodes * length, size, size, 3), dtype=np.uint8),
        "actions": np.resize(np.arange(len(ACTIONS)), n_episodes * length).astype(np.int8),
        "episode_start": np.arange(n_episodes) * length,
        "episode_length": np.full(n_episodes, length),
        "instructions": np.array(["go to the red ball", "walk to the green box"][:n_episodes]),
        "episode_ids": np.array([f"e{i}" for i in range(n_episodes)]),
    }


@pytest.mark.parametrize("n,cap,recent,expected", [
    (3, 4, 2, [0, 1, 2]),
    (10, 4, 2, [0, 7, 8, 9]),
    (10, 5, 2, [0, 4, 7, 8, 9]),
    (10, 3, 3, [7, 8, 9]),
    (100, 8, 4, [0, 32, 63, 95, 96, 97, 98, 99]),
])
def test_recent_plus_sparse_history(n, cap, recent, expected):
    assert select_history(n, cap, recent).tolist() == expected


def test_bad_stem_configs_are_rejected():
    with pytest.raises(ValueError, match="cnn_channels"):
        _cnn_config(cnn_channels=[8, 8])
    with pytest.raises(ValueError, match="vision_stem"):
        _cnn_config(vision_stem="resnet")
    with pytest.raises(ValueError, match="recent_history_frames"):
        _cnn_config(recent_history_frames=9)


def test_stem_grounding_depends_on_the_instruction_at_every_stage(cnn_navid):
    model, proc = cnn_navid
    pixels = torch.randn(2, 3, 16, 16)
    ids = [torch.tensor([proc.encode_instruction(t)]) for t in ("go to the red ball", "go to the blue box")]
    with torch.no_grad():
        same = [model.encode_frames(pixels, model.instruction_condition(i))[0] for i in ids]
        torch.testing.assert_close(same[0], same[1])  # zero-initialised FiLM heads: identity at start
        torch.nn.init.normal_(model.stem_film[-1].weight, std=0.1)
        diff = [model.encode_frames(pixels, model.instruction_condition(i))[0] for i in ids]
    assert diff[0].shape == (2, 16, 32)  # 4x4 current tokens of LM width
    assert not torch.allclose(diff[0], diff[1], atol=1e-4)
    assert not model.accepts_external_encoder
    with pytest.raises(TypeError, match="instruction-conditioned"):
        model.set_vision_encoder(torch.nn.Identity())


def test_per_sample_loss_weights_whole_answers(cnn_navid):
    model, proc = cnn_navid
    data = _dataset()
    batch = EpisodeBatcher(data, proc, steps_per_episode=6, stop_weight=1.0).build([0, 1])
    with torch.no_grad():
        base = float(model.forward_train(batch))
        per_sample = []
        for i in range(batch["input_ids"].shape[0]):
            w = torch.zeros_like(batch["loss_weight"])
            w[i] = 1.0
            per_sample.append(float(model.forward_train({**batch, "loss_weight": w})))
    # unit weights: the loss is the plain mean of per-answer mean token losses, whatever their lengths
    assert base == pytest.approx(float(np.mean(per_sample)), rel=1e-5)


def test_film_cnn_trains_saves_and_plans(cnn_navid, tmp_path):
    from vlm_agent.planners.backends import BuiltinNavidBackend

    model, proc = cnn_navid
    model.train()
    batch = EpisodeBatcher(_dataset(), proc, steps_per_episode=6, stop_weight=2.0).build([0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for i in range(25):
        loss = model.forward_train(batch)
        opt.zero_grad()
        loss.backward()
        if i == 2:
            for part in ("vision_tower.", "stem_film.", "instruction_encoder.", "language_model."):
                assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith(part)), part
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.5 * first
    model.eval()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again = NavidModel.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    backend = BuiltinNavidBackend(str(tmp_path))
    backend.reset("go to the red ball")
    frame = np.zeros((16, 16, 3), np.uint8)
    for _ in range(6):
        backend.observe(frame)
    assert backend.generate(frame)  # grammar text from recent + sparse history


def test_stop_logit_bias_moves_the_stop_decision(cnn_navid):
    model, proc = cnn_navid
    trie = proc.grammar_trie()
    stop_ids = proc.answer_ids([__import__("vlm_agent.actions", fromlist=["NavPrimitive"]).NavPrimitive.stop()])
    torch.manual_seed(1)
    ids = torch.tensor([proc.prompt_ids(proc.encode_instruction("go to the red ball"), 0)])
    feats = torch.randn(proc.current_tokens, 32)
    outs = {}
    for bias in (-50.0, 0.0, 50.0):
        outs[bias] = model.generate_constrained(ids, trie, image_features=feats, first_token_bias=proc.first_token_bias(bias))
    assert outs[50.0] == stop_ids  # a large positive bias always stops
    assert outs[-50.0] != stop_ids  # a large negative one never does
    with pytest.raises(ValueError, match="stop_logit_bias"):
        _cnn_config(stop_logit_bias=float("nan"))


def test_planner_keeps_the_conditioned_stem_in_torch(cnn_navid, tmp_path):
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig

    model, proc = cnn_navid
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    planner = NavidPlanner(NavidPlannerConfig(model_dir=str(tmp_path), encoder_backend="onnxruntime"))
    assert planner.backend.encoder is None  # no pixel-only export of an instruction-conditioned stem
    planner.reset("go to the red ball")
    assert planner.plan(np.zeros((16, 16, 3), np.uint8)).primitives


def test_shipped_default_is_the_film_cnn_navigator_with_a_map_memory():
    import os

    from vlm_agent.planners.navid import IMAGE_ONLY_CHECKPOINT, NavidPlannerConfig

    path = NavidPlannerConfig().resolved_model_dir()
    assert os.path.basename(path) == "navid_map" and os.path.basename(IMAGE_ONLY_CHECKPOINT) == "navid_film"
    if os.path.isfile(os.path.join(path, "config.json")):
        from vlm_agent.models.navid.configuration_navid import NavidConfig

        cfg = NavidConfig.from_pretrained(path)
        assert cfg.vision_stem == "film_cnn" and cfg.recent_history_frames > 0 and cfg.map_cells == 32
        assert cfg.ego_map["camera_height_m"] == 0.95  # the map settings the model was trained with travel with it
    if os.path.isfile(os.path.join(IMAGE_ONLY_CHECKPOINT, "config.json")):
        from vlm_agent.models.navid.configuration_navid import NavidConfig

        assert NavidConfig.from_pretrained(IMAGE_ONLY_CHECKPOINT).map_cells == 0


def _map_dataset(cells=8, **kw):
    from vlm_agent.planners.ego_map import pack_maps

    data = _dataset(**kw)
    rng = np.random.default_rng(3)
    data["maps"] = pack_maps(rng.integers(0, 2, (len(data["frames"]), 3, cells, cells)))
    data["ego_map_config"] = {"cells": cells, "resolution_m": 0.25}
    return data


@pytest.fixture
def map_navid():
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model

    torch.manual_seed(0)
    model, proc = new_model("navid", train_tokenizer(), image_size=16, patch_size=4, vision_hidden=16, text_hidden=32, text_layers=1, heads=4,
                            vision_stem="film_cnn", cnn_channels=[8], current_grid_size=4, max_history_frames=4, recent_history_frames=2,
                            map_cells=8, map_grid_size=2, ego_map={"cells": 8, "resolution_m": 0.25}, aux_action_classes=len(ACTIONS))
    return model.eval(), proc


def test_map_memory_tokens_follow_the_frame_and_change_the_answer(map_navid):
    model, proc = map_navid
    assert model.config.current_tokens == 16 + 4 and proc.current_tokens == 20
    maps = torch.zeros(2, 3, 8, 8)
    maps[1, 1, :4] = 1  # an obstacle ahead in the second map
    with torch.no_grad():
        feats = model.map_features(maps)
    assert feats.shape == (2, 4, 32)
    assert not torch.allclose(feats[0], feats[1])
    with pytest.raises(ValueError, match="expected maps"):
        model.map_features(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="map_grid_size"):
        _cnn_config(map_cells=2, map_grid_size=4)


def test_map_memory_trains_through_lm_and_aux_head(map_navid, tmp_path):
    from vlm_agent.planners.backends import BuiltinNavidBackend

    model, proc = map_navid
    model.train()
    data = _map_dataset()
    batcher = EpisodeBatcher(data, proc, steps_per_episode=6, stop_weight=1.0, map_cells=8)
    batch = batcher.build([0, 1])
    assert batch["maps"].shape == (len(batch["pixel_values"]), 3, 8, 8)
    batch["aux_weight"] = 1.0
    loss = model.forward_train(batch)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("map_encoder."))
    with pytest.raises(ValueError, match="no egocentric maps"):
        EpisodeBatcher(_dataset(), proc, 6, 1.0, map_cells=8)
    with pytest.raises(ValueError, match="cells"):
        EpisodeBatcher(data, proc, 6, 1.0, map_cells=16)
    model.eval()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    backend = BuiltinNavidBackend(str(tmp_path))
    assert backend.ego_map_config == {"cells": 8, "resolution_m": 0.25}
    backend.reset("go to the red ball")
    frame = np.zeros((16, 16, 3), np.uint8)
    backend.observe(frame)
    assert backend.generate(frame, ego_map=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="needs ego_map"):
        backend.generate(frame)


def test_planner_builds_the_map_from_depth_and_pose(map_navid, tmp_path):
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig

    model, proc = map_navid
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    planner = NavidPlanner(NavidPlannerConfig(model_dir=str(tmp_path), camera_height_m=0.5, camera_pitch_rad=0.0))
    assert planner.needs_depth
    planner.reset("go to the red ball")
    rgb = np.zeros((16, 16, 3), np.uint8)
    depth = np.full((16, 16), 1.0, np.float32)  # a wall 1 m ahead of a level camera
    with pytest.raises(ValueError, match="depth and odometry"):
        planner.plan(rgb)
    assert planner.plan(rgb, depth, (0.0, 0.0, 0.0)).primitives
    assert planner.ego_map.config.camera_height_m == 0.5 and planner.ego_map.updates == 1
    planner.observe(rgb, depth, (0.0, 0.0, 0.0))  # the frame just planned on is not added twice
    assert planner.ego_map.updates == 1
    planner.observe(rgb, depth, (0.25, 0.0, 0.0))
    assert planner.ego_map.updates == 2 and planner.ego_map.grid[1].any()
    planner.reset("go to the blue box")
    assert planner.ego_map.updates == 0 and not planner.ego_map.grid.any()


def test_a_mapless_checkpoint_gains_a_map_memory(tmp_path):
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import load_model_and_processor, new_model

    torch.manual_seed(0)
    model, proc = new_model("navid", train_tokenizer(), image_size=16, patch_size=4, vision_hidden=16, text_hidden=32, text_layers=1, heads=4,
                            vision_stem="film_cnn", cnn_channels=[8], current_grid_size=4, max_history_frames=4, recent_history_frames=2,
                            aux_action_classes=len(ACTIONS))
    old_aux = model.aux_action_head.weight.detach().clone()
    model.add_map_memory(8, 2, {"cells": 8})
    proc.current_tokens = model.config.current_tokens
    proc.check_config(model.config)
    torch.testing.assert_close(model.aux_action_head.weight[:, : old_aux.shape[1]], old_aux)
    assert not model.aux_action_head.weight[:, old_aux.shape[1]:].any()  # the map starts with no say in the aux head
    batch = EpisodeBatcher(_map_dataset(), proc, steps_per_episode=3, stop_weight=1.0, map_cells=8).build([0, 1])
    assert torch.isfinite(model.forward_train(batch))
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again, again_proc = load_model_and_processor(str(tmp_path))
    assert again.config.map_cells == 8 and again_proc.current_tokens == 20
    with pytest.raises(ValueError, match="already"):
        again.add_map_memory(8, 2, {})


def _two_squares(rng, proc, n):
    """Frames with a red and a green 4x4 square in two different cells of the 4x4 grid, an instruction
    naming one of them, and the named one's pixels per 4x4 block (what `goal_cell_counts` stores)."""
    frames = np.zeros((n, 16, 16, 3), np.uint8)
    masks = np.zeros((n, 4, 4), np.uint8)
    texts, cells = [], []
    for i in range(n):
        a, b = rng.choice(16, size=2, replace=False)
        for cell, channel in ((a, 0), (b, 1)):
            r, c = divmod(int(cell), 4)
            frames[i, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4, channel] = 255
        red = bool(rng.integers(2))
        target, other = (a, b) if red else (b, a)
        masks[i].flat[target] = 16
        texts.append("go to the red ball" if red else "go to the green ball")
        cells.append((int(target), int(other)))
    ids = [proc.encode_instruction(t) for t in texts]
    T = max(len(x) for x in ids)
    instr = torch.zeros((n, T), dtype=torch.long)
    mask = torch.zeros((n, T), dtype=torch.long)
    for i, x in enumerate(ids):
        instr[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
    return proc.frames_to_pixel_values(frames), instr, mask, torch.from_numpy(masks), cells


def test_grounding_head_learns_which_object_the_instruction_names(cnn_navid):
    model, proc = cnn_navid
    model.add_aux_grounding_head()
    assert model.config.aux_grounding == 1
    rng = np.random.default_rng(0)
    px, ids, mask, target, _ = _two_squares(rng, proc, 4)
    grid = model.grounded_grid(px, model.instruction_condition(ids, mask))
    assert model.grounding_logits(grid).shape == (4, 4, 4)
    # Class balance: all-negative labels leave the negative term alone; positives count half.
    empty = torch.zeros_like(target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model.grounding_logits(grid), torch.zeros(4, 4, 4))
    torch.testing.assert_close(model.grounding_loss(grid, empty), bce)

    def accuracy():
        px, ids, mask, _, cells = _two_squares(np.random.default_rng(1), proc, 64)
        with torch.no_grad():
            logits = model.grounding_logits(model.grounded_grid(px, model.instruction_condition(ids, mask))).flatten(1)
        return float(np.mean([logits[i, t] > logits[i, o] for i, (t, o) in enumerate(cells)]))

    before = accuracy()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        px, ids, mask, target, _ = _two_squares(rng, proc, 16)
        loss = model.grounding_loss(model.grounded_grid(px, model.instruction_condition(ids, mask)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    # The two squares swap roles with the instruction, so only an instruction-conditioned grid can
    # rank the named one first: FiLM starts as the identity (chance), and the head's loss teaches it.
    after = accuracy()
    assert before < 0.7 and after >= 0.9, (before, after)


def test_grounding_head_trains_inside_forward_train_and_loads_back(map_navid, tmp_path):
    from vlm_agent.models.registry import load_model_and_processor

    model, proc = map_navid
    model.add_aux_grounding_head()
    model.train()
    data = _map_dataset()
    data["target_masks"] = np.random.default_rng(4).integers(0, 3, (len(data["frames"]), 4, 4)).astype(np.uint8)
    batcher = EpisodeBatcher(data, proc, steps_per_episode=6, stop_weight=1.0, map_cells=8, target_masks=True)
    batch = batcher.build([0, 1])
    assert batch["target_masks"].shape == (len(batch["pixel_values"]), 4, 4)
    batch["grounding_weight"] = 1.0
    loss = model.forward_train(batch)
    assert set(model.last_loss_parts) == {"lm", "aux", "grounding"}
    loss.backward()
    assert model.aux_grounding_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="target_masks"):
        EpisodeBatcher(_map_dataset(), proc, 6, 1.0, map_cells=8, target_masks=True)
    model.eval()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    loaded, _ = load_model_and_processor(str(tmp_path))
    assert loaded.aux_grounding_head is not None  # strict load: the head's weights travel with the model


def test_hard_negatives_weigh_the_look_alike_cells(cnn_navid):
    model, _ = cnn_navid
    model.add_aux_grounding_head()
    with torch.no_grad():  # logits = the grid's first channel
        model.aux_grounding_head.weight.zero_()
        model.aux_grounding_head.weight[0, 0] = 1.0
        model.aux_grounding_head.bias.zero_()
    grid = torch.zeros(2, 4, 4, 16)
    grid[..., 0] = -6.0  # floor and walls: easy negatives
    grid[:, 0, 0, 0] = 4.0  # the named object
    grid[:, 2, 3, 0] = 3.0  # a look-alike
    grid.requires_grad_(True)
    target = torch.zeros(2, 4, 4)
    target[:, 0, 0] = 5
    plain = model.grounding_loss(grid, target)
    (g_plain,) = torch.autograd.grad(plain, grid)
    hard = model.grounding_loss(grid, target, hard_negatives=1)
    (g_hard,) = torch.autograd.grad(hard, grid)
    assert hard > plain
    # the look-alike's gradient grows several-fold; the easy cells' shrinks (half the plain negative term)
    assert g_hard[0, 2, 3, 0] > 5 * g_plain[0, 2, 3, 0] > 0
    assert 0 < g_hard[0, 1, 1, 0] < g_plain[0, 1, 1, 0]
    everything = model.grounding_loss(grid, target, hard_negatives=1000)  # k past the cells: all negatives, no error
    assert torch.isfinite(everything)
