"""Synthetic data for the models unit tests: tiny, seeded, and named as such."""

from __future__ import annotations

import random

from models.data.events import Event
from models.sequence.config import SeqConfig, TrainConfig

SYNTHETIC_ITEMS = [f"synthetic-item-{i}" for i in range(40)]
TINY_SEQ = SeqConfig(hidden=16, layers=1, heads=2, max_len=8, dropout=0.0)
TINY_TRAIN = TrainConfig(epochs=3, batch_size=16, lr=1e-2, patience=2, bf16=False, threads=1, device="cpu")


def synthetic_events(n_users: int = 60, seed: int = 0) -> list[Event]:
    """Users walking a ring of items (i -> i+1 mostly), so next items are learnable."""
    rng = random.Random(seed)
    events = []
    for u in range(n_users):
        pos = rng.randrange(len(SYNTHETIC_ITEMS))
        for step in range(rng.randint(4, 9)):
            kind = rng.choice(["view", "click", "add_to_cart", "purchase"])
            events.append(Event(f"synthetic-user-{u}", SYNTHETIC_ITEMS[pos], kind, 1_700_000_000.0 + 3600 * step + u))
            pos = (pos + (1 if rng.random() < 0.8 else rng.randrange(len(SYNTHETIC_ITEMS)))) % len(SYNTHETIC_ITEMS)
    return events


def synthetic_titles() -> dict[str, str]:
    colours = ["red", "blue", "green", "black", "pink"]
    kinds = ["nail polish", "shampoo", "lipstick", "face cream"]
    return {item: f"{colours[i % 5]} {kinds[i % 4]}" for i, item in enumerate(SYNTHETIC_ITEMS)}
