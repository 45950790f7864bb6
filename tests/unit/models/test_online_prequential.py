"""Prequential evaluation on a toy log small enough to check by hand."""

from __future__ import annotations

import math

import pytest

from models.data.events import Event
from models.ensemble import Ensemble
from models.evaluation.prequential import prequential, time_edges
from models.online.samples import TrainingSample
from models.scorers import PopularityScorer
from models.vocab import ItemVocab

T0 = 1_700_000_000.0


def popularity_ensemble() -> Ensemble:
    """Popularity only: a (3 events) > b (2) > c (1) > d (0), the same list for everyone."""
    vocab = ItemVocab(["a", "b", "c", "d"])
    pop = PopularityScorer(vocab)
    for item, n in (("a", 3), ("b", 2), ("c", 1)):
        for _ in range(n):
            pop.observe([], item, "view", T0)
    return Ensemble(vocab, {"popularity": pop})


def test_hand_checked_metrics_and_windows() -> None:
    ensemble = popularity_ensemble()
    events = [
        Event("u1", "b", "view", T0 + 10),  # history [a]: a excluded, b ranks first -> hit, gain 1
        Event("u2", "c", "view", T0 + 20),  # no history: a, b, c -> rank 2, gain 1/log2(4) = 0.5
        Event("u1", "a", "view", T0 + 30),  # a is in u1's history: a repeat, not scored
        Event("u3", "zzz", "view", T0 + 40),  # unknown item: a miss
    ]
    result = prequential(events, lambda: ensemble, histories={"u1": [("a", "view")]}, batch_size=2)
    assert result.scored.tolist() == [True, True, False, True]
    assert result.ranks.tolist()[:2] == [0, 2] and result.ranks[3] >= 10
    m = result.metrics(k=10)
    assert m["n"] == 3
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1.0 + 0.5) / 3)
    assert result.metrics(k=2)["hr@2"] == pytest.approx(1 / 3)
    windows = result.windows(time_edges(result.ts, 2))  # [T0+10, T0+25) and [T0+25, T0+40]
    assert [w["n"] for w in windows] == [2, 1]
    assert windows[0]["ndcg@10"] == pytest.approx(0.75) and windows[1]["hr@10"] == 0.0
    assert not math.isnan(result.seconds["test"])


def test_each_batch_is_tested_before_it_is_learnt() -> None:
    ensemble = popularity_ensemble()
    pop = ensemble.scorers["popularity"]
    learnt: list[list[TrainingSample]] = []

    def learn(samples: list[TrainingSample]) -> None:
        learnt.append(samples)
        for s in samples:
            pop.observe(s.history, s.target, s.event_type, s.ts)

    events = [Event("u1", "d", "purchase", T0 + 1), Event("u2", "d", "purchase", T0 + 2)]
    result = prequential(events, lambda: ensemble, learn=learn, batch_size=1)
    # u1's d was tested while d had no events (last of 4 items); u2's d after learning u1's purchase
    assert result.ranks.tolist() == [3, 0]
    assert [[s.target for s in b] for b in learnt] == [["d"], ["d"]] and result.learn_calls == 2
    assert learnt[1][0].items == []  # u2 had no history; users' histories are per user


def test_gain_interval_brackets_the_gain_and_refuses_unpaired_runs() -> None:
    import numpy as np

    from models.evaluation.prequential import PrequentialResult, gain_interval

    n = 400
    ts, scored = np.arange(n, dtype=float), np.ones(n, dtype=bool)
    base = PrequentialResult(ts, scored, np.where(np.arange(n) % 4 == 0, 0, 50))  # hits 1 in 4 (gain 1 each)
    better = PrequentialResult(ts, scored, np.where(np.arange(n) % 2 == 0, 0, 50))  # hits 1 in 2: +100 %
    low, high = gain_interval(base, better, reps=500)
    assert low < 1.0 < high and low > 0.5  # brackets the true +100 %, and clearly excludes "no gain"
    assert gain_interval(base, base, reps=50) == (0.0, 0.0)
    unpaired = PrequentialResult(ts, np.arange(n) % 3 > 0, base.ranks)
    with pytest.raises(ValueError):
        gain_interval(base, unpaired)


def test_resampling_whole_users_widens_the_interval_when_a_users_events_move_together() -> None:
    import numpy as np

    from models.evaluation.prequential import PrequentialResult, gain_interval

    # synthetic: 40 users of 10 events each; the better run gains on some users entirely, on others not at all
    users = np.repeat(np.arange(40), 10)
    n = len(users)
    ts, scored = np.arange(n, dtype=float), np.ones(n, dtype=bool)
    base = PrequentialResult(ts, scored, np.where(np.arange(n) % 4 == 0, 0, 50))
    better = PrequentialResult(ts, scored, np.where((users % 3 == 0) | (np.arange(n) % 4 == 0), 0, 50))
    by_event = gain_interval(base, better, reps=500)
    by_user = gain_interval(base, better, reps=500, groups=users)
    assert by_user[0] < by_event[0] and by_user[1] > by_event[1]  # users, not events, are the independent units
    assert by_user[0] < 1.05 < by_user[1]  # the gain on this stream: 205 hits against 100
