"""Co-visitation restored from a checkpoint builds its neighbour dicts only when it needs them."""

from __future__ import annotations

import copy

from models.checkpoint import load_checkpoint, save_checkpoint
from models.pipeline import replay_counts
from models.scorers import CovisitationScorer
from models.vocab import ItemVocab

from models_synthetic import SYNTHETIC_ITEMS, synthetic_events

EVENTS = synthetic_events(seed=3)  # synthetic ring walks (tests only)


def fitted(events) -> CovisitationScorer:
    scorer = CovisitationScorer(ItemVocab(SYNTHETIC_ITEMS, capacity=8))
    replay_counts([scorer], events, holdout=0)
    return scorer


def test_a_loaded_scorer_learns_on_exactly_like_the_one_that_was_saved(tmp_path) -> None:
    first, rest = EVENTS[: len(EVENTS) // 2], EVENTS[len(EVENTS) // 2 :]
    saved = fitted(first)
    _, loaded, _ = load_checkpoint(save_checkpoint(tmp_path, saved.vocab, {"covis": saved}))
    restored = loaded["covis"]
    assert restored._neighbors is None  # loading left the pairs as tensors
    assert restored.neighbors == saved.neighbors  # built on first use, equal to what was saved
    replay_counts([saved], rest, holdout=0)
    replay_counts([restored], rest, holdout=0)
    assert restored.neighbors == saved.neighbors
    histories = [[SYNTHETIC_ITEMS[1], SYNTHETIC_ITEMS[2]], [SYNTHETIC_ITEMS[7]]]
    assert (restored.score_batch(histories, SYNTHETIC_ITEMS) == saved.score_batch(histories, SYNTHETIC_ITEMS)).all()


def test_observing_right_after_loading_keeps_the_loaded_pairs(tmp_path) -> None:
    saved = fitted(EVENTS)
    _, loaded, _ = load_checkpoint(save_checkpoint(tmp_path, saved.vocab, {"covis": saved}))
    restored = loaded["covis"]
    restored.observe([(SYNTHETIC_ITEMS[0], "view")], SYNTHETIC_ITEMS[5], "click", EVENTS[-1].ts)
    saved.observe([(SYNTHETIC_ITEMS[0], "view")], SYNTHETIC_ITEMS[5], "click", EVENTS[-1].ts)
    assert restored.neighbors == saved.neighbors
    assert len(restored.state()[0]["src"]) == len(saved.state()[0]["src"])


def test_a_deep_copy_learns_on_its_own_and_shares_the_copied_vocabulary() -> None:
    original = fitted(EVENTS[: len(EVENTS) // 2])
    before = {item: dict(nbrs) for item, nbrs in original.neighbors.items()}
    other = copy.deepcopy({"covis": original, "vocab": original.vocab})  # as an ensemble holds them
    clone = other["covis"]
    assert clone.vocab is other["vocab"] and clone.vocab is not original.vocab
    assert clone.neighbors == before
    replay_counts([clone], EVENTS[len(EVENTS) // 2 :], holdout=0)
    clone.observe([(SYNTHETIC_ITEMS[0], "view")], "an-item-only-the-copy-saw", "click", EVENTS[-1].ts)
    assert original.neighbors == before and "an-item-only-the-copy-saw" not in original.vocab
    assert clone.neighbors != before


def test_the_state_is_built_once_and_follows_every_observe() -> None:
    scorer = fitted(EVENTS[: len(EVENTS) // 2])
    first, _ = scorer.state()
    again, _ = scorer.state()
    assert all(again[k] is first[k] for k in first)  # kept: not walked again
    new_item = "an-item-seen-after-the-state-was-built"
    scorer.observe([(SYNTHETIC_ITEMS[0], "view")], new_item, "click", EVENTS[-1].ts)
    after, _ = scorer.state()
    row = scorer.vocab.row(new_item)
    assert len(after["src"]) > len(first["src"]) and row in after["dst"].tolist()
    pairs = set(zip(after["src"].tolist(), after["dst"].tolist()))
    assert pairs == {(scorer.vocab.row(i), scorer.vocab.row(n)) for i, nbrs in scorer.neighbors.items() for n in nbrs}


def test_an_item_is_paired_with_the_previous_distinct_items_however_many_repeats_come_between() -> None:
    """A user views A, then reloads B twelve times, then buys C: C pairs with A (and B), as the stream's
    item statistics pair it (``covisit_pairs`` over the whole history)."""
    scorer = CovisitationScorer(ItemVocab())
    scorer.observe([("A", "view")] + [("B", "view")] * 12, "C", "purchase", 1_700_000_000.0)
    assert set(scorer.neighbors["A"]) == {"C"} and set(scorer.neighbors["C"]) == {"A", "B"}
