"""The trained ensemble behind the stream's ``Recommender`` interface.

Torch work runs on one dedicated thread (torch releases the GIL inside its
kernels), so the Faust event loop keeps heart-beating and serving HTTP while
a micro-batch is scored. Micro-batches are scored one at a time, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from models.ensemble import Ensemble
from models.heuristic import Scored
from models.linear_blend import serving_form
from models.serving import ServingConfig, prepare_for_serving
from stream_app.state import ItemActivity, UserState


def model_version(meta: Mapping[str, object]) -> str:
    """A checkpoint's version: its own name if it has one, else its weights' checksum."""
    if meta.get("model_version"):
        return str(meta["model_version"])
    checksum = meta.get("checksum")
    sha = checksum.get("sha256", "") if isinstance(checksum, Mapping) else ""
    return f"ensemble-{sha[:12]}"


def exclusions(histories: Sequence[Sequence[tuple[str, str]]], bought: Sequence[set[str]]) -> list[set[str]]:
    """What each user is not recommended: the items of their kept history (viewed, carted or bought: the
    latest ``RECO_HISTORY_LEN`` events) and the items they bought (the latest that many distinct purchases)."""
    return [{item for item, _ in history} | b for history, b in zip(histories, bought)]


class EnsembleRecommender:
    """Scores each micro-batch of users with a checkpointed :class:`Ensemble`.

    Its popularity and co-visitation come with the checkpoint and are refreshed by the
    trainer from training samples, so the stream's item-activity path stays idle.
    """

    uses_item_activity = False

    def __init__(self, ensemble: Ensemble, *, version: str, k: int = 10,
                 executor: ThreadPoolExecutor | None = None, device: torch.device | str = "cpu") -> None:
        self.ensemble = ensemble
        self.blend = serving_form(ensemble, device)  # None: the reference path
        self.model_version = version
        self.k = k
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, k: int = 10, serving: ServingConfig = ServingConfig(),
                        executor: ThreadPoolExecutor | None = None) -> EnsembleRecommender:
        """Load, then move/cast/compile for serving (see ``models.serving``)."""
        ensemble, meta = Ensemble.load(path)
        device = prepare_for_serving(ensemble, serving)
        return cls(ensemble, version=model_version(meta), k=k, device=device, executor=executor)

    async def recommend(
        self, users: Mapping[str, UserState], fresh: Mapping[str, ItemActivity]
    ) -> dict[str, list[Scored]]:
        names = list(users)
        histories = [[(e[0], e[1]) for e in users[u]["events"]] for u in names]
        bought = [set(users[u]["bought"]) for u in names]
        loop = asyncio.get_running_loop()
        ranked = await loop.run_in_executor(self.executor, self.rank, histories, bought)
        return dict(zip(names, ranked))

    def rank(self, histories: list[list[tuple[str, str]]], bought: list[set[str]]) -> list[list[Scored]]:
        """Top-k per user from the whole catalogue, without the items in the user's kept history or bought
        (``exclusions``): the model was trained, its blend fitted and every version judged with the history
        left out (not the bought items beyond it: see ``models.evaluation.prequential``)."""
        if self.blend is not None:
            return self.blend.recommend(histories, self.k, exclude=exclusions(histories, bought))
        return self.ensemble.recommend(histories, self.k, exclude_seen=True, exclude=bought)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
