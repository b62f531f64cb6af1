"""Vantage points for a search (`skills/search.py`): reachable standable places, far from every spot
already searched, preferring open space, never an unreachable island."""
import numpy as np
import pytest

from vlm_agent.skills.search import vantage_points

RES = 0.1


def _two_rooms():
    """Clearance and cell centres of two 3 m x 3 m rooms side by side joined by a 0.8 m doorway, plus
    a closed 1 m box of free floor inside the right room (an island the robot cannot reach)."""
    from scipy.ndimage import distance_transform_edt

    occ = np.ones((34, 66), bool)
    occ[2:32, 2:32] = False  # left room, x 0.2-3.2, y 0.2-3.2
    occ[2:32, 34:64] = False  # right room, x 3.4-6.4
    occ[13:21, 32:34] = False  # doorway
    occ[22:32, 50:52] = True  # walls of the island in the right room: x 5.0-5.2 ...
    occ[22:24, 50:64] = True  # ... y 2.2-2.4: cells x 5.2-6.4, y 2.4-3.2 closed off
    gx, gy = np.meshgrid((np.arange(66) + 0.5) * RES, (np.arange(34) + 0.5) * RES)
    return distance_transform_edt(~occ) * RES, gx, gy


def test_picks_the_far_reachable_places_first_and_never_the_island():
    clear, gx, gy = _two_rooms()
    picks = vantage_points(clear, gx, gy, (1.0, 1.0), count=3)
    assert len(picks) == 3
    first = picks[0]
    assert first[0] > 5.0  # across the doorway, in the far room
    for x, y in picks:
        assert not (x > 5.2 and y > 2.4)  # the island's floor
        i, j = int(y / RES), int(x / RES)
        assert clear[i, j] >= 0.5  # open space: a full circle there looks across the room
    d = [np.hypot(a[0] - b[0], a[1] - b[1]) for k, a in enumerate(picks) for b in picks[k + 1:] + [(1.0, 1.0)]]
    assert min(d) >= 1.5


def test_spots_already_searched_are_not_picked_again_and_separation_stops_picking():
    clear, gx, gy = _two_rooms()
    first = vantage_points(clear, gx, gy, (1.0, 1.0), count=1)[0]
    again = vantage_points(clear, gx, gy, (1.0, 1.0), searched_xy=[first], count=1)[0]
    assert np.hypot(again[0] - first[0], again[1] - first[1]) >= 1.5
    many = vantage_points(clear, gx, gy, (1.0, 1.0), count=50)
    assert 3 <= len(many) < 50  # two 3 m rooms hold only so many places 1.5 m apart
    assert vantage_points(clear, gx, gy, (1.0, 1.0), count=50, min_separation_m=10.0) == []


def test_nothing_to_pick_from_off_the_map_or_when_asked_for_none_and_bad_shapes_are_refused():
    clear, gx, gy = _two_rooms()
    assert vantage_points(clear, gx, gy, (30.0, 30.0), count=2) == []  # the robot is not on this map
    assert vantage_points(clear, gx, gy, (float("nan"), 1.0), count=2) == []
    assert vantage_points(clear, gx, gy, (1.0, 1.0), count=0) == []
    assert vantage_points(np.zeros_like(clear), gx, gy, (1.0, 1.0), count=2) == []  # nowhere to stand
    with pytest.raises(ValueError, match="one shape"):
        vantage_points(clear[:, :10], gx, gy, (1.0, 1.0))
    with pytest.raises(ValueError, match="count"):
        vantage_points(clear, gx, gy, (1.0, 1.0), count=-1)
