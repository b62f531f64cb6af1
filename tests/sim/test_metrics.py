"""Metrics on hand-computed cases."""
import math

import numpy as np
import pytest

from vlm_agent.sim.metrics import aggregate_nav, aggregate_seg, iou, nav_episode_metrics, spl


def test_spl_hand_cases():
    assert spl(False, 5.0, 5.0) == 0.0
    assert spl(True, 5.0, 10.0) == 0.5
    assert spl(True, 5.0, 4.0) == 1.0  # shorter than "shortest" (grid geodesic) is capped at 1
    assert spl(True, 0.0, 3.0) == 1.0


def test_nav_episode_success_needs_stop_distance_and_subgoals():
    m = nav_episode_metrics(stopped=True, final_distance_m=0.9, min_distance_m=0.5, path_length_m=8.0, shortest_path_m=6.0)
    assert m["success"] == 1.0 and m["spl"] == pytest.approx(0.75) and m["oracle_success"] == 1.0
    assert m["navigation_error"] == 0.9 and m["trajectory_length"] == 8.0
    # passed by the goal (OSR) but stopped 1.5 m away: no success, SPL 0
    m = nav_episode_metrics(stopped=True, final_distance_m=1.5, min_distance_m=0.4, path_length_m=8.0, shortest_path_m=6.0)
    assert (m["success"], m["spl"], m["oracle_success"]) == (0.0, 0.0, 1.0)
    # never called stop
    assert nav_episode_metrics(False, 0.2, 0.2, 3.0, 3.0)["success"] == 0.0
    # close to the final goal but skipped the first one of "first go to X, then to Y"
    assert nav_episode_metrics(True, 0.2, 0.2, 3.0, 3.0, subgoals_done=False)["success"] == 0.0


def test_aggregate_nav_means():
    a = nav_episode_metrics(True, 0.5, 0.5, 4.0, 4.0)
    b = nav_episode_metrics(True, 2.5, 2.0, 2.0, 4.0)
    agg = aggregate_nav([a, b])
    assert agg == {"success_rate": 0.5, "spl": 0.5, "navigation_error": 1.5, "oracle_success_rate": 0.5, "trajectory_length": 3.0}


def test_iou_miou_ciou_hand_cases():
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[0:2, 1:3] = True  # 4 px, 2 overlap
    v, i, u = iou(pred, gt)
    assert (i, u) == (2, 6) and v == pytest.approx(1 / 3)
    big_gt = np.ones((4, 4), bool)  # 16 px, predicted perfectly
    v2, i2, u2 = iou(big_gt, big_gt)
    per = [{"iou": v, "intersection": i, "union": u}, {"iou": v2, "intersection": i2, "union": u2}]
    agg = aggregate_seg(per)
    assert agg["miou"] == pytest.approx((1 / 3 + 1) / 2)
    assert agg["ciou"] == pytest.approx((2 + 16) / (6 + 16))
    assert iou(np.zeros((2, 2)), np.zeros((2, 2)))[0] == 1.0
    with pytest.raises(ValueError):
        iou(np.zeros((2, 2)), np.zeros((3, 2)))
    assert math.isnan(aggregate_seg([])["miou"])
