"""NaVid model specifics: history subsampling, FiLM grounding, constrained decoding, training batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm_agent.actions import ACTIONS
from vlm_agent.models.navid.modeling_navid import NavidModel
from vlm_agent.models.navid.processing_navid import NavidProcessor, answer_text, select_history
from vlm_agent.planners.navid_grammar import parse_primitives
from vlm_agent.training.navid import EpisodeBatcher

from .conftest import tiny_model_and_processor


@pytest.fixture
def navid():
    return tiny_model_and_processor("navid", max_history_frames=4)


@pytest.mark.parametrize("n,cap", [(0, 4), (3, 4), (4, 4), (5, 4), (200, 16), (1000, 1), (17, 16)])
def test_select_history(n, cap):
    idx = select_history(n, cap)
    assert len(idx) == min(n, cap)
    assert np.all(np.diff(idx) > 0) and (n == 0 or (idx[-1] == n - 1 and (cap == 1 or idx[0] == 0)))


def test_candidate_answers_are_the_grammar(navid):
    _, proc = navid
    answers = proc.candidate_answers()
    assert len(answers) == 4 + 3 * 4 + 9 * 4  # stop only last, up to 3 primitives
    for a in answers:
        parsed = parse_primitives(answer_text(a))
        assert parsed.ok and parsed.primitives == a
    # Trie leaves are exactly the candidates' token sequences.
    leaves = []

    def walk(node, prefix):
        if not node:
            leaves.append(prefix)
        for t, child in node.items():
            walk(child, prefix + [t])

    walk(proc.grammar_trie(), [])
    assert sorted(leaves) == sorted(proc.answer_ids(a) for a in answers)


def _prompt(model, proc, instruction_ids, n_history, seed):
    """(input_ids (1, L), image features (M, D)) of a NaVid prompt over random frames."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    with torch.no_grad():
        cond = model.instruction_condition(torch.tensor([instruction_ids]))
        cur, his = model.encode_frames(torch.randn(n_history + 1, 3, 16, 16, generator=g), cond)
        feats = torch.cat([his[:n_history].reshape(-1, his.shape[-1]), cur[-1]])
        ids = torch.tensor([proc.prompt_ids(instruction_ids, n_history)])
        assert int((ids == c.image_token_id).sum()) == n_history * 4 + 64
        return ids, feats


@pytest.mark.parametrize("seed", range(4))
def test_constrained_decoding_always_yields_grammar_text(navid, seed):
    model, proc = navid
    torch.manual_seed(seed)
    for p in model.language_model.parameters():  # a random, confident LM: argmax varies by seed
        p.data.normal_(0, 0.5)
    ids, feats = _prompt(model, proc, proc.encode_instruction("go to the red ball"), 3, seed)
    out = model.generate_constrained(ids, proc.grammar_trie(), image_features=feats)
    assert out[-1] == model.config.eos_token_id
    parsed = parse_primitives(proc.tokenizer.decode(out, skip_special_tokens=True))
    assert parsed.ok and 1 <= len(parsed.primitives) <= 3


def test_film_makes_frame_tokens_depend_on_the_instruction(navid):
    model, proc = navid
    pixels = torch.randn(1, 3, 16, 16)
    a_ids, b_ids = (torch.tensor([proc.encode_instruction(t)]) for t in ("go to the red ball", "go to the blue box"))
    with torch.no_grad():
        same = [model.encode_frames(pixels, model.instruction_condition(i))[0] for i in (a_ids, b_ids)]
        torch.testing.assert_close(same[0], same[1])  # zero-initialised FiLM head: identity at start
        torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.1)
        diff = [model.encode_frames(pixels, model.instruction_condition(i))[0] for i in (a_ids, b_ids)]
    assert not torch.allclose(diff[0], diff[1], atol=1e-4)


def _dataset(n_episodes=3, length=7, size=16, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.full(n_episodes, length)
    return {
        "frames": rng.integers(0, 255, (n_episodes * length, size, size, 3), dtype=np.uint8),
        "actions": rng.integers(0, len(ACTIONS), n_episodes * length).astype(np.int8),
        "episode_start": np.arange(n_episodes) * length,
        "episode_length": lengths,
        "instructions": np.array(["go to the red ball", "walk to the green box", "first go to the blue ball, then to the red box"][:n_episodes]),
        "episode_ids": np.array([f"e{i}" for i in range(n_episodes)]),
    }


def test_batches_match_placeholders_and_history_layout(navid):
    model, proc = navid
    batcher = EpisodeBatcher(_dataset(), proc, steps_per_episode=7, stop_weight=2.0)
    batch = batcher.build([0, 2])
    n_img = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_img == len(batch["feature_index"])
    # step s of an episode sees min(s, cap=4) history frames
    hist_counts = sorted(int(((row == model.config.image_token_id).sum() - 64) // 4) for row in batch["input_ids"])
    assert hist_counts == sorted([min(s, 4) for s in range(7)] * 2)
    assert batch["pixel_values"].shape[0] == 14  # every frame of both episodes, encoded once


def test_training_step_reduces_loss_and_reaches_every_part(navid):
    model, proc = navid
    model.train()
    batch = EpisodeBatcher(_dataset(n_episodes=2, length=5), proc, steps_per_episode=5, stop_weight=2.0).build([0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for i in range(20):
        loss = model.forward_train(batch)
        opt.zero_grad()
        loss.backward()
        if i == 0:
            first = float(loss.detach())
        if i == 2:  # FiLM's head is zero-initialised, so the GRU gets gradients from the 2nd step on
            grads = {n: p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()}
            for part in ("vision_tower.", "film_blocks.", "instruction_film.", "instruction_encoder.", "multi_modal_projector.", "language_model."):
                assert any(v for n, v in grads.items() if n.startswith(part)), part
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_aux_action_head_trains_and_round_trips(navid, tmp_path):
    model, proc = navid
    batch = EpisodeBatcher(_dataset(n_episodes=2, length=4), proc, steps_per_episode=4, stop_weight=2.0).build([0, 1])
    with torch.no_grad():
        plain = float(model.forward_train(batch))
    model.add_aux_action_head(len(ACTIONS))
    loss = model.forward_train({**batch, "aux_weight": 1.0})
    assert float(loss) > plain  # the expert-action cross-entropy is added
    loss.backward()
    assert model.aux_action_head.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again = NavidModel.from_pretrained(tmp_path)
    assert again.config.aux_action_classes == len(ACTIONS)
    torch.testing.assert_close(again.aux_action_head.weight, model.aux_action_head.weight)
