"""Ranking metrics and the leave-one-out protocol on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.evaluation.metrics import hit_rate, ndcg, ranking_metrics
from models.evaluation.protocol import MISS, leave_one_out, rank_full, rank_sampled, sample_negatives
from models.vocab import ItemVocab


def test_metrics_match_hand_computed_values() -> None:
    ranks = np.array([0, 3, 12, 30])  # 0-based ranks of four users' targets
    assert hit_rate(ranks, 5) == pytest.approx(2 / 4)
    assert hit_rate(ranks, 20) == pytest.approx(3 / 4)
    assert ndcg(ranks, 5) == pytest.approx((1.0 + 1.0 / math.log2(5)) / 4)
    assert ndcg(ranks, 20) == pytest.approx((1.0 + 1.0 / math.log2(5) + 1.0 / math.log2(14)) / 4)
    assert ranking_metrics(ranks)["hr@10"] == pytest.approx(0.5)
    assert ndcg(np.array([], dtype=np.int64), 10) == 0.0


def fixed_scores(items: object, types: object) -> torch.Tensor:
    """Five rows (0 is padding): row 4 best, rows 1 and 2 tied, row 3 worst."""
    return torch.tensor([[float("-inf"), 2.0, 2.0, 1.0, 3.0]]).expand(len(items), -1).clone()  # type: ignore[arg-type]


def test_rank_full_counts_ties_against_the_target_and_excludes_history() -> None:
    # Target 2 ties with row 1 and is behind row 4: rank 2.
    assert rank_full(fixed_scores, [[3]], [[4]], [2], exclude_seen=False).tolist() == [2]
    # Row 4 is in the history, so it is excluded: rank 1 (the tie with row 1 still counts).
    assert rank_full(fixed_scores, [[4]], [[4]], [2]).tolist() == [1]
    assert rank_full(fixed_scores, [[4]], [[4]], [1]).tolist() == [1]  # a lower row wins no tie either


def test_when_every_item_scores_the_same_no_target_is_a_hit() -> None:
    """Synthetic scores with no evidence at all (what an empty history gives a blend without popularity):
    breaking ties by row gave the targets on the first ten rows free hits."""
    n_rows = 40  # row 0 is padding
    flat = lambda items, types: torch.zeros((len(items), n_rows))  # noqa: E731
    targets = list(range(1, n_rows))
    empty = [[] for _ in targets]
    ranks = rank_full(flat, empty, empty, targets)
    assert ranks.tolist() == [n_rows - 2] * len(targets) and hit_rate(ranks, 10) == 0.0
    seen = [[t % (n_rows - 1) + 1] for t in targets]  # one other item in each history: excluded, not counted
    assert rank_full(flat, seen, seen, targets).tolist() == [n_rows - 3] * len(targets)
    negatives = sample_negatives([{t} for t in targets], n_rows, 99, seed=0)
    sampled = rank_sampled(flat, empty, empty, targets, negatives)
    assert sampled.tolist() == [99] * len(targets) and hit_rate(sampled, 10) == 0.0


def test_rank_sampled_counts_only_sampled_negatives() -> None:
    negatives = np.array([[3, 1]])
    assert rank_sampled(fixed_scores, [[4]], [[4]], [2], negatives).tolist() == [1]
    assert rank_sampled(fixed_scores, [[4]], [[4]], [4], negatives).tolist() == [0]


def test_a_nan_target_score_is_a_miss_in_both_protocols_however_small_the_catalogue() -> None:
    """Nothing compares above NaN: counting better items would rank the target first. Four items, k = 10:
    a rank of "all items" would still be a hit, so a miss is ``MISS``."""
    nan_scores = lambda items, types: torch.full((len(items), 5), float("nan"))  # noqa: E731
    ranks = rank_full(nan_scores, [[4]], [[4]], [2])
    assert ranks.tolist() == [MISS] and hit_rate(ranks, 10) == 0.0
    assert rank_sampled(nan_scores, [[4]], [[4]], [2], np.array([[3, 1]])).tolist() == [MISS]


def test_sampled_negatives_avoid_the_users_items() -> None:
    seen = [set(range(1, 200)), {5, 6}]
    negs = sample_negatives(seen, 1000, 99, seed=3)
    assert negs.shape == (2, 99)
    assert not (set(negs[0].tolist()) & seen[0]) and not (set(negs[1].tolist()) & seen[1])
    assert len(set(negs[1].tolist())) == 99 and 0 not in negs
    np.testing.assert_array_equal(negs, sample_negatives(seen, 1000, 99, seed=3))


def test_leave_one_out_holds_out_the_last_two_items() -> None:
    vocab = ItemVocab(["a", "b", "c", "d"])
    split = leave_one_out({"u": [("a", "view"), ("b", "click"), ("c", "view"), ("d", "purchase")], "short": [("a", "view")]}, vocab)
    assert split.users == ["u"]
    assert split.train_items == [[1, 2]] and split.valid_target == [3] and split.test_target == [4]
    assert split.test_inputs()[0] == [[1, 2, 3]]
    assert split.fit_items == [[1, 2], [1]]


def test_a_last_item_the_vocabulary_does_not_know_stays_the_target_and_is_a_miss() -> None:
    """Synthetic: u's last item "new" is unknown; it is still u's test target (never "c" instead)."""
    vocab = ItemVocab(["a", "b", "c", "d"])
    split = leave_one_out({"u": [("a", "view"), ("b", "view"), ("c", "view"), ("new", "view")]}, vocab)
    assert split.valid_target == [3] and split.test_target == [0] and split.unknown_targets() == 1
    items, types, targets = split.test_inputs()
    assert items == [[1, 2, 3]]
    assert rank_full(fixed_scores, items, types, targets).tolist() == [MISS]
    assert rank_sampled(fixed_scores, items, types, targets, np.array([[4, 4]])).tolist() == [MISS]
