"""SYNTHETIC attacks, labelled, injected into a replay of real events (for evaluating the detectors).

Nothing here is real fraud: every attacker is a made-up account whose id
starts with ``attack-``, acting on real items of the replayed log. Kinds:

- ``bot``: a script viewing random items at a fixed period with 3% jitter.
- ``click_burst``: 40-150 clicks on 1-3 items at 0.5-2 clicks a second.
- ``crawler``: views of many distinct items, irregular (exponential) gaps.
- ``shilling``: a campaign of 20-40 fresh accounts; each views a few popular
  filler items, then views, clicks and carts one target item (a tail item).
  The target item is labelled too (``shilling_target``).
- ``card_testing``: many small purchases fast (cart then buy, 0.5-3.00 each),
  the usual shape of testing stolen cards; it is not a price anomaly.
- ``cashout``: an account with a normal purchase history (days apart) that
  then buys 1-3 items at 5-30x its usual price within minutes (account
  takeover); ``start_ts`` is the first expensive purchase.

Attacks start at uniform times between the ``start_quantiles`` of the real
events' times.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from models.data.events import Event

ATTACK_PREFIX = "attack-"


@dataclass(frozen=True)
class AttackLabel:
    """The ground truth for one attacking entity."""

    entity_type: str  # "user" | "item"
    entity_id: str
    kind: str
    start_ts: float  # the first malicious event


@dataclass(frozen=True)
class InjectionConfig:
    """How many attacks of each kind, and their ranges (drawn uniformly per attack)."""

    bots: int = 5
    bot_events: tuple[int, int] = (30, 90)
    bot_period_s: tuple[float, float] = (3.0, 40.0)
    bot_jitter: float = 0.03  # std of a gap relative to the period
    click_bursts: int = 5
    burst_clicks: tuple[int, int] = (40, 150)
    burst_rate_per_s: tuple[float, float] = (0.5, 2.0)
    crawlers: int = 5
    crawler_items: tuple[int, int] = (60, 150)
    crawler_mean_gap_s: tuple[float, float] = (2.0, 10.0)
    shilling_campaigns: int = 2
    shill_users: tuple[int, int] = (20, 40)
    shill_span_s: tuple[float, float] = (1800.0, 5400.0)
    shill_fillers: int = 3  # popular items each fake account views first
    shill_target_events: tuple[int, int] = (2, 20)  # the target is a tail item with this many real events
    card_testers: int = 5
    card_tests: tuple[int, int] = (8, 25)
    card_span_s: tuple[float, float] = (60.0, 600.0)
    card_price: tuple[float, float] = (0.5, 3.0)
    cashouts: int = 5
    cashout_history: tuple[int, int] = (6, 12)
    cashout_base_price: tuple[float, float] = (5.0, 80.0)
    cashout_ratio: tuple[float, float] = (5.0, 30.0)
    start_quantiles: tuple[float, float] = (0.1, 0.95)


@dataclass(frozen=True)
class Injected:
    """Real and synthetic events merged in time order, and the labels of the synthetic attackers."""

    events: list[Event]
    labels: dict[tuple[str, str], AttackLabel]  # (entity_type, entity_id) -> label


class _Attacks:
    """Builds the synthetic events and labels for one seed."""

    def __init__(self, real: Sequence[Event], config: InjectionConfig, seed: int) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.seed = seed
        times = sorted(e.ts for e in real)
        lo, hi = config.start_quantiles
        self.t0, self.t1 = times[int(lo * (len(times) - 1))], times[int(hi * (len(times) - 1))]
        counts = Counter(e.item_id for e in real)
        self.items = sorted(counts)
        self.popular = [i for i, _ in counts.most_common(50)]
        low, high = config.shill_target_events
        self.tail = sorted(i for i, n in counts.items() if low <= n <= high and i not in self.popular) or self.items
        self.events: list[Event] = []
        self.labels: dict[tuple[str, str], AttackLabel] = {}

    def uniform(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    def count(self, bounds: tuple[int, int]) -> int:
        return self.rng.randint(*bounds)

    def start(self) -> float:
        return self.rng.uniform(self.t0, self.t1)

    def user(self, kind: str, n: int, start_ts: float, tag: str = "") -> str:
        user = f"{ATTACK_PREFIX}{kind}-{self.seed}-{tag}{n}"
        self.labels[("user", user)] = AttackLabel("user", user, kind, start_ts)
        return user

    def add(self, user: str, item: str, event_type: str, ts: float, price: float | None = None) -> None:
        self.events.append(Event(user, item, event_type, ts, price=price))

    def bot(self, n: int) -> None:
        ts, period = self.start(), self.uniform(self.config.bot_period_s)
        user = self.user("bot", n, ts)
        for _ in range(self.count(self.config.bot_events)):
            self.add(user, self.rng.choice(self.items), "view", ts)
            ts += max(0.1, self.rng.gauss(period, self.config.bot_jitter * period))

    def click_burst(self, n: int) -> None:
        ts, rate = self.start(), self.uniform(self.config.burst_rate_per_s)
        user = self.user("click_burst", n, ts)
        targets = self.rng.sample(self.items, self.rng.randint(1, 3))
        for _ in range(self.count(self.config.burst_clicks)):
            self.add(user, self.rng.choice(targets), "click", ts)
            ts += self.rng.expovariate(rate)

    def crawler(self, n: int) -> None:
        ts, mean_gap = self.start(), self.uniform(self.config.crawler_mean_gap_s)
        user = self.user("crawler", n, ts)
        for item in self.rng.sample(self.items, min(len(self.items), self.count(self.config.crawler_items))):
            self.add(user, item, "view", ts)
            ts += self.rng.expovariate(1.0 / mean_gap)

    def shilling(self, c: int) -> None:
        begin, span = self.start(), self.uniform(self.config.shill_span_s)
        target = self.rng.choice(self.tail)
        self.labels[("item", target)] = AttackLabel("item", target, "shilling_target", begin)
        arrivals = sorted(begin + self.rng.random() * span for _ in range(self.count(self.config.shill_users)))
        arrivals[0] = begin
        for n, ts in enumerate(arrivals):
            user = self.user("shilling", n, ts, tag=f"c{c}-")
            fillers = self.rng.sample(self.popular, min(len(self.popular), self.config.shill_fillers))
            steps = [(f, "view") for f in fillers] + [(target, t) for t in ("view", "click", "add_to_cart")]
            for item, event_type in steps:
                self.add(user, item, event_type, ts)
                ts += self.rng.lognormvariate(2.7, 0.8)  # median 15 s, like a person

    def card_testing(self, n: int) -> None:
        ts = self.start()
        user = self.user("card_testing", n, ts)
        tests = self.count(self.config.card_tests)
        gap = self.uniform(self.config.card_span_s) / tests
        for _ in range(tests):
            item = self.rng.choice(self.items)
            self.add(user, item, "add_to_cart", ts)
            price = round(self.uniform(self.config.card_price), 2)
            self.add(user, item, "purchase", ts + self.rng.uniform(1.0, 5.0), price)
            ts += self.rng.expovariate(1.0 / gap)

    def cashout(self, n: int) -> None:
        start, base = self.start(), self.uniform(self.config.cashout_base_price)
        user = self.user("cashout", n, start)
        ts = start
        for _ in range(self.count(self.config.cashout_history)):  # the account's normal past, backwards in time
            ts -= self.rng.uniform(0.5, 3.0) * 86_400.0
            price = round(base * self.rng.lognormvariate(0.0, 0.25), 2)
            self.add(user, self.rng.choice(self.items), "purchase", ts, price)
        ts = start
        for _ in range(self.rng.randint(1, 3)):
            price = round(base * self.uniform(self.config.cashout_ratio), 2)
            self.add(user, self.rng.choice(self.items), "purchase", ts, price)
            ts += self.rng.uniform(30.0, 300.0)


def inject_attacks(real: Sequence[Event], config: InjectionConfig | None = None, *, seed: int = 0) -> Injected:
    """``real`` plus synthetic attacks, merged in time order (real events first on ties), with labels."""
    config = config or InjectionConfig()
    attacks = _Attacks(real, config, seed)
    plan = [
        (config.bots, attacks.bot), (config.click_bursts, attacks.click_burst), (config.crawlers, attacks.crawler),
        (config.shilling_campaigns, attacks.shilling), (config.card_testers, attacks.card_testing),
        (config.cashouts, attacks.cashout),
    ]
    for times, build in plan:
        for n in range(times):
            build(n)
    tagged = [(e.ts, 0, n, e) for n, e in enumerate(real)] + [(e.ts, 1, n, e) for n, e in enumerate(attacks.events)]
    tagged.sort(key=lambda t: t[:3])
    return Injected(events=[e for *_, e in tagged], labels=attacks.labels)


def is_synthetic(user_id: str) -> bool:
    """Whether a user id belongs to an injected attacker."""
    return user_id.startswith(ATTACK_PREFIX)
