"""Leave-one-out evaluation: last item is the test target, second-last the validation target.

Every user's target is ranked against ALL items (``rank_full``) or against 99
sampled items the user never touched (``rank_sampled``). Items already in the
history are excluded from the full ranking (as in the S3-Rec evaluation).
Every tie counts against the target: its rank is the number of other
candidates scoring at least as high, so a scorer that scores everything alike
gains nothing (breaking ties by row gave early rows free hits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.history import encode
from models.vocab import ItemVocab

MISS = 2**62  # the rank of a target that cannot be a hit: unknown to the vocabulary, or scored NaN

ScoreFn = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], torch.Tensor]


@dataclass(frozen=True)
class LeaveOneOut:
    """Encoded splits. ``fit_*``: what models learn from (evaluated users' training part plus
    whole histories of users too short to evaluate)."""

    users: list[str]
    train_items: list[list[int]]
    train_types: list[list[int]]
    valid_target: list[int]
    valid_type: list[int]
    test_target: list[int]
    fit_items: list[list[int]]
    fit_types: list[list[int]]

    def valid_inputs(self) -> tuple[list[list[int]], list[list[int]], list[int]]:
        return self.train_items, self.train_types, self.valid_target

    def test_inputs(self) -> tuple[list[list[int]], list[list[int]], list[int]]:
        items = [h + [v] if v else h for h, v in zip(self.train_items, self.valid_target)]
        types = [t + [k] if v else t for t, k, v in zip(self.train_types, self.valid_type, self.valid_target)]
        return items, types, self.test_target

    def unknown_targets(self, target: str = "test") -> int:
        """How many ``target`` ("test" or "valid") items the vocabulary does not know (each a miss)."""
        return sum(1 for t in (self.test_target if target == "test" else self.valid_target) if t == 0)


def leave_one_out(histories: dict[str, list[tuple[str, str]]], vocab: ItemVocab) -> LeaveOneOut:
    """Split users' time-ordered histories as logged: the last event is the test target, the second last the
    validation target, even where ``vocab`` does not know the item (row 0: a miss when ranked; dropping
    unknown items first made an earlier item the target). Users with fewer than 3 events only train."""
    users, tr_i, tr_t, va, va_t, te = [], [], [], [], [], []
    fit_i, fit_t = [], []
    for user, history in histories.items():
        if len(history) < 3:
            rows, kinds = encode(vocab, history)
            fit_i.append(rows)
            fit_t.append(kinds)
            continue
        rows, kinds = encode(vocab, history[:-2])
        valid, valid_kind = _target(vocab, history[-2])
        users.append(user)
        tr_i.append(rows)
        tr_t.append(kinds)
        va.append(valid)
        va_t.append(valid_kind)
        te.append(_target(vocab, history[-1])[0])
    return LeaveOneOut(users, tr_i, tr_t, va, va_t, te, tr_i + fit_i, tr_t + fit_t)


def _target(vocab: ItemVocab, entry: str | tuple[str, str]) -> tuple[int, int]:
    """(row, type index) of one history entry; (0, 0) for an item ``vocab`` does not know."""
    rows, kinds = encode(vocab, [entry])
    return (rows[0], kinds[0]) if rows else (0, 0)


def _pessimistic_rank(scores: torch.Tensor, rows: torch.Tensor, target_pos: int = 0) -> torch.Tensor:
    """0-based rank of column ``target_pos`` among candidate ``scores`` (batch, n) with ``rows`` (batch, n):
    the other candidates (not padding, not the target's own row) scoring at least as high."""
    t_score = scores[:, target_pos : target_pos + 1]
    t_row = rows[:, target_pos : target_pos + 1]
    rank = ((scores >= t_score) & (rows != t_row) & (rows > 0)).sum(dim=1)
    return torch.where(torch.isnan(t_score[:, 0]) | (t_row[:, 0] == 0), MISS, rank)  # NaN or unknown: a miss


def rank_full(
    score_fn: ScoreFn,
    items: Sequence[Sequence[int]],
    types: Sequence[Sequence[int]],
    targets: Sequence[int],
    *,
    batch_size: int = 512,
    exclude_seen: bool = True,
) -> np.ndarray:
    """Rank of each target among all rows (row 0 excluded), history rows pushed last; target row 0: ``MISS``."""
    ranks: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        b_items, b_types = items[start : start + batch_size], types[start : start + batch_size]
        ranks.append(rank_scored(score_fn(b_items, b_types), b_items, targets[start : start + batch_size],
                                 exclude_seen=exclude_seen))
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def rank_scored(scores: torch.Tensor, items: Sequence[Sequence[int]], targets: Sequence[int], *,
                exclude_seen: bool = True) -> np.ndarray:
    """``rank_full`` on scores already computed: (batch, n_rows) with row 0 the padding."""
    scores = scores[:, 1:].float().clone()  # (batch, n_items)
    n_items = scores.shape[1]
    flat = [b * n_items + r - 1 for b, h in enumerate(items) for r in h] if exclude_seen else []
    target = (torch.as_tensor(targets)[:, None] - 1).clamp(min=0)
    rank = ranks_at_least(scores, target, torch.as_tensor(flat, dtype=torch.long))
    rank[(torch.as_tensor(targets) == 0).numpy()] = MISS  # row 0: a target the vocabulary does not know
    return rank


def ranks_at_least(scores: torch.Tensor, target: torch.Tensor, excluded: torch.Tensor) -> np.ndarray:
    """0-based rank of each row's ``target`` column (batch, 1) in ``scores`` (batch, n; changed in place):
    the other columns scoring at least as high, every tie against the target, leaving out the ``excluded``
    entries (flat indices: a user's history, ranked last and not counted even where they tie with a target
    that is one of them). A NaN target score is ``MISS``: nothing compares above NaN, it would rank first."""
    if len(excluded):
        scores.view(-1)[excluded] = float("-inf")
    t_score = scores.gather(1, target)
    at_least = scores >= t_score
    at_least.scatter_(1, target, False)  # not the target itself
    if len(excluded):
        at_least.view(-1)[excluded] = False
    rank = at_least.sum(dim=1, dtype=torch.int32).cpu().numpy().astype(np.int64)  # int32: 2-9x faster here
    rank[torch.isnan(t_score[:, 0]).cpu().numpy()] = MISS
    return rank


def sample_negatives(
    seen: Sequence[set[int]], n_rows: int, n_negatives: int = 99, seed: int = 0
) -> np.ndarray:
    """(users, n_negatives) rows drawn uniformly without replacement from rows each user never touched.

    A catalogue too small for that (tiny test data) is drawn with replacement;
    with nothing left to draw, row 0 (padding, never ranked above a target) fills in.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((len(seen), n_negatives), dtype=np.int64)
    for u, s in enumerate(seen):
        unseen = n_rows - 1 - sum(1 for r in s if 0 < r < n_rows)
        if unseen < 2 * n_negatives:
            pool = np.asarray([r for r in range(1, n_rows) if r not in s], dtype=np.int64)
            if len(pool):
                out[u] = rng.choice(pool, size=n_negatives, replace=len(pool) < n_negatives)
            continue
        picked: dict[int, None] = {}
        while len(picked) < n_negatives:
            for row in rng.integers(1, n_rows, size=2 * n_negatives).tolist():
                if row not in s:
                    picked[row] = None
                    if len(picked) == n_negatives:
                        break
        out[u] = list(picked)
    return out


def rank_sampled(
    score_fn: ScoreFn,
    items: Sequence[Sequence[int]],
    types: Sequence[Sequence[int]],
    targets: Sequence[int],
    negatives: np.ndarray,
    *,
    batch_size: int = 512,
) -> np.ndarray:
    """Rank of each target among itself and its sampled negatives (99-negatives protocol)."""
    ranks: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        b_items, b_types = items[start : start + batch_size], types[start : start + batch_size]
        scores = score_fn(b_items, b_types).float()
        target = torch.as_tensor(targets[start : start + batch_size])[:, None]
        cands = torch.cat([target, torch.as_tensor(negatives[start : start + batch_size])], dim=1)
        ranks.append(_pessimistic_rank(scores.gather(1, cands), cands).numpy())
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
