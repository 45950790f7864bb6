"""The baseline popularity + co-visitation scorer, top-k and forward decay."""

from __future__ import annotations

import math

from models.heuristic import HeuristicConfig, recent_distinct, score_user
from models.item_stats import add_neighbor, covisit_pairs, decayed, log2_add, log_weight
from models.topk import top_k


def test_top_k_orders_by_score_then_id():
    assert top_k({"b": 1.0, "a": 1.0, "c": 2.0}, 2) == [("c", 2.0), ("a", 1.0)]
    assert top_k({"a": 1.0}, 0) == []


def test_log2_add_matches_plain_sum():
    assert math.isclose(2 ** log2_add(3.0, 5.0), 2**3 + 2**5)
    assert log2_add(float("-inf"), 4.0) == 4.0
    assert math.isfinite(log2_add(20_000.0, 20_000.0))  # Unix-time scale, no overflow


def test_forward_decay_halves_per_half_life():
    s = log_weight(1000.0, 4.0, half_life_s=10.0)
    assert math.isclose(decayed(s, 1000.0, 10.0), 4.0)
    assert math.isclose(decayed(s, 1010.0, 10.0), 2.0)


def test_covisit_pairs_skip_repeats_and_weigh_by_distance():
    assert covisit_pairs(["a", "b", "a", "c"], "d", window=5) == [("c", 1.0), ("a", 0.5), ("b", 1 / 3)]
    assert covisit_pairs(["a", "d"], "d", window=5) == [("a", 0.5)]


def test_add_neighbor_prunes_to_the_strongest():
    nbrs: dict[str, float] = {}
    for i in range(4):
        add_neighbor(nbrs, f"n{i}", float(i), max_neighbors=2)
    assert set(nbrs) == {"n2", "n3"}


def test_score_user_blends_and_explains():
    popular = [("p", 10.0), ("b", 8.0)]
    neighbors = {"a": {"b": 5.0, "c": 4.0}}
    out = score_user(["a"], popular, neighbors, k=3, config=HeuristicConfig(covis_weight=1.0, popularity_weight=0.5))
    assert [s.item_id for s in out] == ["b", "c", "p"]
    b = out[0]
    assert math.isclose(b.contributions["covisitation"], 1.0)
    assert math.isclose(b.contributions["popularity"], 0.5 * 2 ** (8 - 10))
    assert b.because_of == "a" and out[2].because_of is None


def test_score_user_with_no_signal_is_empty_and_respects_exclusions():
    assert score_user(["a"], [], {}, k=5) == []
    out = score_user([], [("x", 1.0), ("y", 0.0)], {}, k=5, exclude={"x"})
    assert [s.item_id for s in out] == ["y"]


def test_recent_distinct_newest_first():
    assert recent_distinct(["a", "b", "a", "c"], 2) == ["c", "a"]
