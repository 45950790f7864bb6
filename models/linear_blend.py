"""The serving form of an :class:`Ensemble`: the same blend, exactly, in one matmul per micro-batch.

``Ensemble.recommend`` normalises every scorer over the whole catalogue for every
user, then blends. For the scorers the stream serves with, most of that work
has a closed form:

- sequence logits ``h . E_i`` are linear in the item table, so their per-user
  mean and standard deviation over the catalogue are ``h . mu`` and
  ``sqrt(h' C h)`` (``mu``, ``C``: the table's mean and covariance, computed
  once), and the z-scored, weighted logits are one matmul ``(w h / sd) . E_i``
  minus a per-user constant;
- popularity is the same for every user: its weighted z-scores are one
  precomputed vector;
- co-visitation is sparse: ``log(s / max + floor)`` is ``log(floor)`` except on
  the few hundred neighbours of the user's recent items, added by one scatter.

So a micro-batch costs one (batch, hidden) x (hidden, items) matmul, a
broadcast add, a scatter and a top-k, on the model's device; only the top-k
rows come back. Scores and contributions equal ``Ensemble.recommend`` up to
float rounding (tested). Any other scorer (text) makes :func:`supports` false:
serve those through ``Ensemble.recommend``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from models.ensemble import Ensemble
from models.evaluation.protocol import ranks_at_least
from models.heuristic import Scored
from models.history import History, encode
from models.scorers.covisitation import CovisitationScorer
from models.scorers.popularity import PopularityScorer
from models.scorers.sequence import SequenceScorer
from models.sequence.batching import pad_right

LINEAR_KINDS = {SequenceScorer: "zscore", PopularityScorer: "zscore", CovisitationScorer: "log_relative"}
COVIS_FLOOR = 1e-3  # models.ensemble.log_relative's default floor


def supports(ensemble: Ensemble) -> bool:
    """Whether every weighted scorer has a closed form here (at most one of each kind)."""
    active = [s for n, s in ensemble.scorers.items() if ensemble.weights.get(n, 0.0) != 0.0]
    kinds = [type(s) for s in active]
    return bool(active) and all(LINEAR_KINDS.get(k) == s.blend for k, s in zip(kinds, active)) \
        and len(set(kinds)) == len(kinds)


def serving_form(ensemble: Ensemble, device: torch.device | str | None = None) -> LinearBlend | None:
    """The ensemble's ``LinearBlend`` where :func:`supports` it, else None (score with the ensemble itself)."""
    return LinearBlend(ensemble, device) if supports(ensemble) else None


class LinearBlend:
    """Precomputed serving state of one ensemble version (rebuild it after the ensemble changes)."""

    def __init__(self, ensemble: Ensemble, device: torch.device | str | None = None) -> None:
        """``device``: where the blend computes; None: where the sequence model is (else the CPU)."""
        if not supports(ensemble):
            raise ValueError("LinearBlend serves sequence, popularity and co-visitation scorers only")
        self.ensemble = ensemble
        self.vocab = ensemble.vocab
        self.n_rows = len(self.vocab)
        self.names = list(ensemble.scorers)
        self.seq = self.pop = self.covis = None
        self.w_seq = self.w_pop = self.w_covis = 0.0
        for name, scorer in ensemble.scorers.items():
            w = float(ensemble.weights.get(name, 0.0))
            if w == 0.0:
                continue
            if isinstance(scorer, SequenceScorer):
                self.seq, self.seq_name, self.w_seq = scorer, name, w
            elif isinstance(scorer, PopularityScorer):
                self.pop, self.pop_name, self.w_pop = scorer, name, w
            elif isinstance(scorer, CovisitationScorer):
                self.covis, self.covis_name, self.w_covis = scorer, name, w
        if device is None:
            device = self.seq.model.device if self.seq is not None else "cpu"
        self.device = torch.device(device)
        self._prepare()

    def _prepare(self) -> None:
        n = self.n_rows
        self.base = torch.zeros(n, dtype=torch.float32)  # per-item part common to every user
        if self.pop is not None:
            z = _zscores(self.pop.item_scores()[1:n].double())
            self.pop_z = torch.cat([z.new_zeros(1), z]).float()
            self.base += self.w_pop * self.pop_z
        if self.covis is not None:
            self.base += self.w_covis * math.log(COVIS_FLOOR)
            self._covis_csr()
        self.base[0] = float("-inf")
        self.base = self.base.to(self.device)
        if self.seq is not None:
            self.seq.model.ensure_rows(self.vocab.capacity)  # counting scorers may have grown the vocabulary
            table = self.seq.model.items.weight.detach()[:n]
            body = table[1:].double().cpu()
            self.mu = body.mean(0)  # (hidden,)
            centred = body - self.mu
            self.cov = (centred.T @ centred / body.shape[0])  # (hidden, hidden), population covariance
            self.table = table.to(self.device)  # the model's own (possibly bf16, on-device) rows

    @torch.inference_mode()
    def recommend(self, histories: Sequence[History], k: int,
                  exclude: Sequence[Iterable[str]] | None = None) -> list[list[Scored]]:
        """Top-``k`` per user with each scorer's contribution; ``exclude``: item ids to remove per user."""
        if not histories:
            return []
        encoded = [encode(self.vocab, h) for h in histories]
        total, (vectors, seq_scale, seq_shift), (covis_idx, covis_val, covis_seed) = self._scores(
            [r for r, _ in encoded], [t for _, t in encoded])
        masked = _exclusion_index(self.vocab, exclude, self.n_rows) if exclude is not None else None
        if masked is not None and masked.numel():
            total.view(-1)[masked.to(self.device)] = float("-inf")
        kk = min(k, self.n_rows)
        top_scores, top_rows = torch.topk(total, kk, dim=1)
        if seq_shift is not None:
            top_scores = top_scores + seq_shift
        top_scores, top_rows = top_scores.cpu(), top_rows.cpu()
        at_top = self._covis_at(top_rows, covis_idx)
        contrib = self._contributions(top_rows, seq_scale, seq_shift, covis_val, at_top, vectors)
        because = self._because_of(covis_seed, at_top)
        return self._scored(top_scores, top_rows, contrib, because)

    @torch.inference_mode()
    def rank_targets(self, rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]],
                     targets: Sequence[int]) -> np.ndarray:
        """0-based rank of each target row among all items, the user's own rows and row 0 excluded, every tie
        counted against the target: ``protocol.rank_scored`` of the ensemble's blend, at the cost of one matmul."""
        total, _, _ = self._scores(rows, types)
        # left out: row 0 (padding) and each user's own rows
        flat = [b * self.n_rows + r for b, history in enumerate(rows) for r in (0, *history)]
        target = torch.as_tensor(targets, dtype=torch.long, device=self.device)[:, None]
        return ranks_at_least(total, target, torch.as_tensor(flat, dtype=torch.long, device=self.device))

    def _scores(self, rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]]):
        """(batch, n_rows) blended scores less each user's sequence shift (which changes no ranking), the
        sequence terms (vectors, scale, shift) and the co-visitation terms (``_covis_terms``)."""
        batch = len(rows)
        seq_scale = seq_shift = vectors = None
        if self.seq is None:
            total = self.base.expand(batch, -1).clone()  # (batch, n_rows)
        else:  # the per-user shift is added to the top-k only: it changes no ranking
            vectors, seq_scale, seq_shift = self._sequence_terms(rows, types)
            scaled = vectors * seq_scale.to(vectors.dtype)
            if self.table.dtype == torch.float32:
                total = torch.addmm(self.base, scaled, self.table.T)  # one pass: base + (w h / sd) . E
            else:
                total = (scaled @ self.table.T).float().add_(self.base)
        covis_idx, covis_val, covis_seed = self._covis_terms(rows) if self.covis is not None else (None, None, None)
        if covis_idx is not None and covis_idx.numel():
            total.view(-1).index_add_(0, covis_idx.to(self.device), (self.w_covis * covis_val).to(self.device))
        return total, (vectors, seq_scale, seq_shift), (covis_idx, covis_val, covis_seed)

    def _sequence_terms(self, rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]]):
        """User vectors on the device, and per-user scale ``w / sd`` and shift ``-w mu.h / sd``."""
        vectors = self._user_vectors(rows, types)
        h = vectors.double().cpu()
        mean = h @ self.mu  # (batch,)
        sd = ((h @ self.cov) * h).sum(1).clamp(min=0).sqrt().clamp(min=1e-6)
        scale = (self.w_seq / sd).float()
        shift = (-self.w_seq * mean / sd).float()
        return vectors, scale[:, None].to(self.device), shift[:, None].to(self.device)

    def _user_vectors(self, rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> torch.Tensor:
        """(batch, hidden) transformer states after each user's last item; zero for empty histories.

        Users are grouped by history length (widths 4, 8, 16, ... up to ``max_len``)
        so a batch costs about the sum of its lengths, not batch x longest.
        """
        max_len = self.seq.config.max_len
        model = self.seq.model
        groups: dict[int, list[int]] = {}
        for b, r in enumerate(rows):
            n = min(len(r), max_len)
            if n:
                groups.setdefault(min(max(4, 1 << (n - 1).bit_length()), max_len), []).append(b)
        dtype = model.items.weight.dtype
        vectors = torch.zeros((len(rows), model.config.hidden), dtype=dtype, device=self.device)
        for width, members in groups.items():
            items, kinds, lengths = pad_right([rows[b] for b in members], [types[b] for b in members], width)
            if items.shape[1] < width:  # a fixed set of shapes (compiled graphs are reused)
                pad = width - items.shape[1]
                items = torch.nn.functional.pad(items, (0, pad))
                kinds = torch.nn.functional.pad(kinds, (0, pad))
            out = model.user_vectors(items.to(self.device), kinds.to(self.device), lengths.to(self.device))
            vectors[torch.as_tensor(members, device=self.device)] = out
        return vectors

    def _covis_csr(self) -> None:
        """Every item's top neighbours and relative weights (strongest = 1), as CSR arrays."""
        tensors, _ = self.covis.state()
        src, dst, logw = tensors["src"], tensors["dst"], tensors["log_weight"]
        order = torch.argsort(-logw, stable=True)
        order = order[torch.argsort(src[order], stable=True)]  # by item, strongest neighbour first
        src, dst, logw = src[order], dst[order], logw[order]
        counts = torch.bincount(src, minlength=self.n_rows)[: self.n_rows]
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        rank = torch.arange(len(src)) - ptr[src]
        keep = (rank < self.covis.config.max_neighbors) & (src < self.n_rows) & (dst < self.n_rows)
        src, dst, logw = src[keep], dst[keep], logw[keep]
        best = torch.full((self.n_rows,), float("-inf"), dtype=torch.float64).scatter_reduce_(0, src, logw, "amax")
        self.covis_rel = torch.exp2(logw - best[src]).float()
        self.covis_dst = dst
        counts = torch.bincount(src, minlength=self.n_rows)[: self.n_rows]
        self.covis_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])

    def _covis_terms(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat (user * n_rows + row) indices (sorted), ``log_relative - log(floor)`` values of the
        evidence, and the row of the user's item that gave each the most of it."""
        users: list[int] = []
        seeds: list[int] = []
        ranks: list[int] = []
        recent = self.covis.config.recent_items
        for b, history in enumerate(rows):
            seen: set[int] = set()
            for row in reversed(history):  # the user's latest distinct items, weight 1/recency rank
                if row not in seen:
                    seen.add(row)
                    users.append(b)
                    seeds.append(row)
                    ranks.append(len(seen))
                    if len(seen) == recent:
                        break
        seed = torch.as_tensor(seeds, dtype=torch.long)
        counts = self.covis_ptr[seed + 1] - self.covis_ptr[seed]
        owner = torch.repeat_interleave(torch.arange(len(seeds)), counts)  # seed of each expanded entry
        if not len(owner):
            return torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, dtype=torch.long)
        first = torch.cumsum(counts, 0) - counts
        pos = self.covis_ptr[seed][owner] + torch.arange(len(owner)) - first[owner]
        user = torch.as_tensor(users, dtype=torch.long)[owner]
        weight = self.covis_rel[pos] / torch.as_tensor(ranks, dtype=torch.float32)[owner]
        idx, inverse = torch.unique(user * self.n_rows + self.covis_dst[pos], return_inverse=True)
        sums = torch.zeros(len(idx)).index_add_(0, inverse, weight)  # evidence per (user, item)
        strongest = torch.zeros(len(idx)).scatter_reduce_(0, inverse, weight, "amax", include_self=False)
        is_best = weight == strongest[inverse]
        best_seed = torch.zeros(len(idx), dtype=torch.long).scatter_(0, inverse[is_best], seed[owner][is_best])
        keep = idx % self.n_rows > 0
        idx, sums, best_seed = idx[keep], sums[keep], best_seed[keep]
        owner_user = idx // self.n_rows
        top = torch.zeros(len(rows)).scatter_reduce_(0, owner_user, sums, "amax", include_self=True)
        rel = sums.clamp(min=0) / top[owner_user].clamp(min=1e-12)
        return idx, torch.log(rel + COVIS_FLOOR) - math.log(COVIS_FLOOR), best_seed

    def _covis_at(self, top_rows: torch.Tensor, covis_idx) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Where each top (user, row) sits in the sorted co-visitation entries, and whether it has one."""
        if covis_idx is None or not covis_idx.numel():
            return None
        flat = top_rows + torch.arange(len(top_rows))[:, None] * self.n_rows
        pos = torch.searchsorted(covis_idx, flat).clamp(max=len(covis_idx) - 1)
        return pos, covis_idx[pos] == flat

    def _because_of(self, covis_seed, at_top) -> list[list[str | None]] | None:
        """Per top item, the user's recent item it was co-visited with most (None: no co-visitation)."""
        if at_top is None:
            return None
        pos, hit = at_top
        item = self.vocab.item
        return [[item(r) if r > 0 else None for r in row] for row in torch.where(hit, covis_seed[pos], 0).tolist()]

    def _contributions(self, top_rows, seq_scale, seq_shift, covis_val, at_top, vectors) -> dict[str, torch.Tensor]:
        """(batch, k) weighted normalised score of each active scorer at the top rows."""
        out: dict[str, torch.Tensor] = {}
        if self.seq is not None:
            picked = self.table[top_rows.to(self.device)]  # (batch, k, hidden)
            logits = (picked @ vectors.unsqueeze(-1)).squeeze(-1).float()
            out[self.seq_name] = (logits * seq_scale + seq_shift).cpu()
        if self.pop is not None:
            out[self.pop_name] = self.w_pop * self.pop_z[top_rows]
        if self.covis is not None:
            extra = torch.zeros(top_rows.shape, dtype=torch.float32)
            if at_top is not None:
                pos, hit = at_top
                extra = torch.where(hit, covis_val[pos], extra)
            out[self.covis_name] = self.w_covis * (extra + math.log(COVIS_FLOOR))
        return out

    def _scored(self, top_scores: torch.Tensor, top_rows: torch.Tensor, contrib: dict[str, torch.Tensor],
                because: list[list[str | None]] | None = None) -> list[list[Scored]]:
        """Scored items per user, best first, ties by lower row (among the chosen: see
        ``Ensemble.recommend``); ``-inf`` (excluded) items dropped."""
        by_row = torch.argsort(top_rows, dim=1, stable=True)
        by_score = torch.argsort(-top_scores.gather(1, by_row), dim=1, stable=True)
        order = by_row.gather(1, by_score)  # (batch, k): score descending, then row ascending
        scores, rows = top_scores.gather(1, order).tolist(), top_rows.gather(1, order).tolist()
        zeros = torch.zeros(top_rows.shape, dtype=torch.float32)
        parts = [contrib.get(n, zeros).float().gather(1, order).tolist() for n in self.names]  # names x (batch, k)
        if because is None:
            why = [[None] * len(r_b) for r_b in rows]
        else:
            why = [[b_b[j] for j in o_b] for b_b, o_b in zip(because, order.tolist())]
        names, item, neg_inf = self.names, self.vocab.item, float("-inf")
        return [[Scored(item_id=item(r), score=s, contributions=dict(zip(names, p)), because_of=w)
                 for r, s, w, *p in zip(r_b, s_b, w_b, *p_b) if s != neg_inf]
                for r_b, s_b, w_b, *p_b in zip(rows, scores, why, *parts)]


def _zscores(x: torch.Tensor) -> torch.Tensor:
    """Population z-scores of a vector (as ``models.ensemble.standardise`` does per row)."""
    std, mean = torch.std_mean(x, correction=0)
    return (x - mean) / std.clamp(min=1e-6)


def _exclusion_index(vocab, exclude: Sequence[Iterable[str]], n_rows: int) -> torch.Tensor:
    """Flat (user * n_rows + row) indices of each user's excluded known items."""
    flat = [b * n_rows + r for b, items in enumerate(exclude) for r in vocab.rows(list(items)) if r > 0]
    return torch.as_tensor(flat, dtype=torch.long)
