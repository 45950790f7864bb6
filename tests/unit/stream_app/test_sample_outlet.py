"""Training samples leave a worker counted: sent, dropped or lost add up; a graceful stop sends the held ones."""

from __future__ import annotations

import asyncio

import pytest

from models.online.samples import TrainingSample
from stream_app.holdback import Holdback
from stream_app.sample_outlet import SampleOutlet
from stream_app.sinks.memory import MemoryStore


def _samples(users: list[str]) -> list[TrainingSample]:
    return [TrainingSample(u, ["a"], ["view"], f"item{i}", "view", 1.0, i, "v1") for i, u in enumerate(users)]


class Broker:
    """Takes sends (until ``closed``) and acknowledges them when told; ``refuse`` fails their deliveries."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.deliveries: list[asyncio.Future] = []
        self.closed = False

    async def send(self, sample: TrainingSample) -> asyncio.Future:
        if self.closed:
            raise RuntimeError("Error while sending: ProducerClosed()")
        self.sent.append(sample.target)
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    def acknowledge(self, refuse: int = 0) -> None:
        for i, future in enumerate(d for d in self.deliveries if not d.done()):
            future.set_exception(OSError("broker refused")) if i < refuse else future.set_result(None)


def _outlet(broker: Broker, delay_s: float, quarantined: set[str], counted: dict) -> SampleOutlet:
    async def add_counters(counts, write_id):
        for name, n in counts.items():
            counted[name] = counted.get(name, 0) + n

    return SampleOutlet(Holdback(delay_s), broker.send, lambda s: s.user_id not in quarantined, add_counters)


def test_released_samples_are_counted_once_the_broker_has_them_and_the_outcomes_add_up() -> None:
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.0, {"bot"}, counted)
        outlet.add(_samples(["u1", "bot", "u2", "u3"]))
        await outlet.release()
        await outlet.flush_counts()
        assert broker.sent == ["item0", "item2", "item3"] and counted == {"samples_dropped": 1}  # not yet acked
        broker.acknowledge(refuse=1)
        await asyncio.sleep(0)  # the deliveries' callbacks
        await outlet.flush_counts()
        return counted, outlet.in_flight

    counted, in_flight = asyncio.run(scenario())
    assert counted == {"samples_dropped": 1, "samples_sent": 2, "samples_lost": 1} and in_flight == 0


def test_a_send_that_fails_counts_the_rest_as_lost_and_does_not_stop_the_worker(caplog) -> None:
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.0, set(), counted)
        outlet.add(_samples(["u1", "u2", "u3"]))
        broker.closed = True
        await outlet.release()
        await outlet.flush_counts()
        return counted

    with caplog.at_level("ERROR"):
        assert asyncio.run(scenario()) == {"samples_lost": 3}
    assert "3 training samples lost" in caplog.text and "ProducerClosed" in caplog.text


def test_a_graceful_stop_waits_out_the_hold_so_an_alert_still_stops_a_sample_and_the_rest_are_sent() -> None:
    async def scenario():
        broker, counted, quarantined = Broker(), {}, set()
        outlet = _outlet(broker, 0.3, quarantined, counted)
        outlet.add(_samples(["u1", "bot", "u2"]))
        await outlet.release()
        assert broker.sent == []  # still held
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, quarantined.add, "bot")  # an alert arrives while the worker stops
        loop.call_later(0.4, broker.acknowledge)  # the broker acknowledges after the hold
        started = loop.time()
        await outlet.drain(timeout_s=5.0)
        return broker.sent, counted, loop.time() - started

    sent, counted, took = asyncio.run(scenario())
    assert sent == ["item0", "item2"] and counted == {"samples_sent": 2, "samples_dropped": 1}
    assert 0.3 <= took < 2.0


def test_samples_of_a_batch_that_ends_after_the_stop_began_are_counted_as_lost() -> None:
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.0, set(), counted)
        await outlet.drain()
        outlet.add(_samples(["u1", "u2"]))
        await outlet.release()
        await outlet.flush_counts()
        return broker.sent, counted

    assert asyncio.run(scenario()) == ([], {"samples_lost": 2})


def test_counts_the_store_did_not_take_are_kept_for_the_next_flush() -> None:
    async def scenario():
        broker, counted, fail = Broker(), {}, [True]
        inner = _outlet(broker, 0.0, {"bot"}, counted)._add_counters

        async def flaky(counts, write_id):
            if fail[0]:
                raise ConnectionError("redis down")
            await inner(counts, write_id)

        outlet = SampleOutlet(Holdback(0.0), broker.send, lambda s: s.user_id != "bot", flaky)
        outlet.add(_samples(["bot"]))
        await outlet.release()
        with pytest.raises(ConnectionError):
            await outlet.flush_counts()
        fail[0] = False
        await outlet.flush_counts()
        return counted

    assert asyncio.run(scenario()) == {"samples_dropped": 1}


def test_counts_that_landed_though_their_flush_failed_are_counted_once() -> None:
    """The store took the counts but the reply was lost: the next flush sends them again under the same
    write id, so the store (here the in-memory one, which keeps ids as Redis does) adds them once."""
    async def scenario():
        broker, store, lose_reply = Broker(), MemoryStore(), [True]

        async def reply_lost_once(counts, write_id):
            await store.add_counters(counts, write_id)
            if lose_reply[0]:
                lose_reply[0] = False
                raise ConnectionError("connection reset before the reply")

        outlet = SampleOutlet(Holdback(0.0), broker.send, lambda s: s.user_id != "bot", reply_lost_once)
        outlet.add(_samples(["bot"]))
        await outlet.release()
        with pytest.raises(ConnectionError):
            await outlet.flush_counts()
        outlet.add(_samples(["bot", "bot"]))  # more outcomes meanwhile, counted under a new id
        await outlet.release()
        await outlet.flush_counts()
        return await store.counters()

    assert asyncio.run(scenario())["samples_dropped"] == 3  # 1 + 2, not 1 + 1 + 2


def test_flushes_at_once_send_each_count_once() -> None:
    """The timer's flush is still waiting for the store when another flush starts (a late batch's release,
    the drain): every outcome reaches the store, and each is sent (and added to the metrics) once."""
    async def scenario():
        broker, store, sent = Broker(), MemoryStore(), []

        async def slow_store(counts, write_id):
            sent.append(dict(counts))
            await asyncio.sleep(0.01)
            await store.add_counters(counts, write_id)

        outlet = SampleOutlet(Holdback(0.0), broker.send, lambda s: s.user_id != "bot", slow_store)
        outlet.add(_samples(["bot"]))
        await outlet.release()
        first = asyncio.create_task(outlet.flush_counts())
        await asyncio.sleep(0)  # the first flush is inside its write
        outlet.add(_samples(["bot", "bot"]))
        await outlet.release()
        await asyncio.gather(first, outlet.flush_counts())
        return sent, await store.counters()

    sent, counters = asyncio.run(scenario())
    assert counters["samples_dropped"] == 3
    assert [c["samples_dropped"] for c in sent] == [1, 2]


def test_a_batch_that_finishes_while_the_stop_waits_out_the_hold_is_sent_too() -> None:
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.2, set(), counted)
        outlet.add(_samples(["u1"]))
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, outlet.add, _samples(["u2", "u3"]))  # the last batch ends during the drain
        loop.call_later(0.5, broker.acknowledge)
        await outlet.drain(timeout_s=5.0)
        return broker.sent, counted

    sent, counted = asyncio.run(scenario())
    assert len(sent) == 3 and counted == {"samples_sent": 3}


def test_a_batch_that_ends_after_the_drain_has_its_lost_samples_counted_at_its_own_release() -> None:
    """A stop the worker did not wait for its batches (a crash-initiated stop): the timer no longer flushes,
    so the late batch's release must, or its samples would be counted nowhere."""
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.0, set(), counted)
        await outlet.drain()
        outlet.add(_samples(["u1", "u2", "u3"]))
        await outlet.release()  # what the agent does after every batch; no flush_counts follows
        return broker.sent, counted

    assert asyncio.run(scenario()) == ([], {"samples_lost": 3})


def test_samples_a_stop_gave_up_on_are_not_sent_later() -> None:
    """Counted lost when the drain's deadline passed, they must not be sent (and counted sent) afterwards."""
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.2, set(), counted)
        outlet.add(_samples(["u0"]))
        loop = asyncio.get_running_loop()
        for k in range(1, 6):  # batches keep finishing while the stop drains
            loop.call_later(0.08 * k, outlet.add, _samples([f"u{k}"]))
        loop.call_later(0.01, broker.acknowledge)
        await outlet.drain(timeout_s=0.05)
        await asyncio.sleep(0.3)
        await outlet.release()  # a timer call that was waiting, or a late batch's release
        broker.acknowledge()
        await asyncio.sleep(0)
        await outlet.flush_counts()
        return broker.sent, counted

    sent, counted = asyncio.run(scenario())
    assert counted.get("samples_sent", 0) == len(sent)  # nothing both sent and counted lost
    assert sum(counted.values()) == 6, counted


def test_an_alert_applied_while_earlier_sends_wait_stops_the_samples_after_it() -> None:
    """The outlet decided every due sample before awaiting the first send; a producer whose buffer was full
    made the sends wait, and a bot's alert applied meanwhile stopped none of its 10 samples (9 sent)."""
    async def scenario():
        quarantined, sent, counted = set(), [], {}

        async def slow_send(sample: TrainingSample) -> asyncio.Future:
            await asyncio.sleep(0.01)  # waiting for room in the producer's batch
            sent.append(sample.user_id)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        async def add_counters(counts, write_id):
            for name, n in counts.items():
                counted[name] = counted.get(name, 0) + n

        outlet = SampleOutlet(Holdback(0.0), slow_send, lambda s: s.user_id not in quarantined, add_counters)
        outlet.add(_samples(["human"] + ["bot"] * 10))
        loop = asyncio.get_running_loop()
        loop.call_later(0.015, quarantined.add, "bot")  # follow_alerts applies the bot's alert
        await outlet.release()
        await asyncio.sleep(0)
        await outlet.flush_counts()
        return sent, counted, outlet.holdback.take_released_in("user", "bot", 1e12)

    sent, counted, released_before_alert = asyncio.run(scenario())
    assert sent == ["human", "bot"]  # the bot's first sample was already being sent...
    assert counted == {"samples_sent": 2, "samples_dropped": 9}
    assert released_before_alert == 1  # ...so the alert counts it as let through (it was not, remembered late)


def test_a_sample_whose_send_failed_is_lost_not_released_before_an_alert() -> None:
    """Remembered as released though never handed over, it was counted lost and again as released before
    the alert that covered it."""
    async def scenario():
        broker, counted = Broker(), {}
        outlet = _outlet(broker, 0.0, {"bot"}, counted)
        broker.closed = True
        outlet.add(_samples(["u1", "bot", "u2"]))
        await outlet.release()
        await outlet.flush_counts()
        return counted, outlet.holdback.take_released_in("user", "u1", 1e12)

    counted, released = asyncio.run(scenario())
    assert counted == {"samples_lost": 2, "samples_dropped": 1} and released == 0
