"""A worker stopped while a batch's alerts are being sent raises them again after the restart (at least once),
and a batch whose outputs the broker did not take fails before its states are written.

Faust cancels a stopping agent and then flushes its producer, changelog
records included. Alerts are the one output a re-delivery does not rebuild
(the restored monitor knows it raised them), so the agents send them before
they write any state. All events here are synthetic.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError

from models.anomaly.base import UserContext
from models.anomaly.monitor import AnomalyMonitor
from models.data.events import Event
from stream_app.agents.events import finish_batch
from stream_app.agents.item_anomalies import handle_touches
from stream_app.touches import touch
from tests.unit.stream_app.test_pipeline import NOW, msg, run_monitored
from stream_app.sinks.memory import MemoryStore


class Stopped(Exception):
    """Stands for the cancellation of a stopping agent, at the first alert it sends."""


async def stop_at_send(*_args, **_kwargs) -> None:
    raise Stopped


async def delivered(*_args, **_kwargs) -> asyncio.Future:
    """A send the broker took: its delivery is done."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


async def not_delivered(*_args, **_kwargs) -> asyncio.Future:
    """A send that was handed to the producer but never acknowledged (aiokafka fails it after its timeout)."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(KafkaTimeoutError())
    return fut


def fake_topics(alerts_send, send=delivered) -> SimpleNamespace:
    """Topics whose sends go nowhere (``send``), except the alerts topic's, which calls ``alerts_send``."""
    named = SimpleNamespace(get_topic_name=lambda: "t", partitions=1, send=send)
    return SimpleNamespace(item_activity=named, recommendations=named, item_touches=named,
                           alerts=SimpleNamespace(send=alerts_send), dead_letters=named, events=named)


def test_a_stop_while_the_users_alerts_are_sent_leaves_their_states_unwritten() -> None:
    """A click bot (30 clicks in 30 s) raises alerts; the worker stops at the first alert it sends."""
    clicks = [msg(k, "bot", f"i{k}", "click", ts=NOW - 100 + k + (0.4 if k % 2 else 0.0)) for k in range(30)]
    store, table = MemoryStore(), {}
    out = run_monitored(clicks, table, store, AnomalyMonitor())
    assert out.alerts
    app = SimpleNamespace(producer=SimpleNamespace(send=delivered))
    with pytest.raises(Stopped):
        asyncio.run(finish_batch(app, out, fake_topics(stop_at_send), table))
    assert table == {}  # nothing says the events were applied...

    again = run_monitored(clicks, table, store, AnomalyMonitor())  # ...so after the restart they are processed
    assert again.counters["duplicates"] == 0
    assert sorted(a.key for a in again.alerts) == sorted(a.key for a in out.alerts)


def test_a_stop_while_an_items_alerts_are_sent_leaves_its_state_unwritten() -> None:
    """12 new accounts push one item; the agent stops at the first alert it sends."""
    rows = [touch(Event(f"fake{n}", "target", "add_to_cart", NOW + 150.0 * n), UserContext(NOW + 150.0 * n))
            for n in range(12)]
    messages = [(orjson.dumps(rows), 0, 0)]
    table: dict[bytes, dict] = {}
    with pytest.raises(Stopped):
        asyncio.run(handle_touches(AnomalyMonitor(items=True), messages, table, stop_at_send))
    assert table == {}

    sent = []

    async def record(alert) -> None:
        sent.append(alert)

    asyncio.run(handle_touches(AnomalyMonitor(items=True), messages, table, record))  # re-delivered after a restart
    assert [(a.entity_id, a.detector) for a in sent if a.entity_type == "item"] == [("target", "shilling")]
    assert set(table) == {b"target"}


def test_outputs_the_broker_did_not_take_fail_the_batch_before_its_states_are_written() -> None:
    """Before, a send's failure surfaced only on its future, which nobody awaited: the states were written,
    the offsets committed, and the recommendations lost (a re-delivery counts the events as duplicates)."""
    views = [msg(k, f"u{k % 3}", f"i{k}", "view", ts=NOW - 100 + k) for k in range(9)]
    store, table = MemoryStore(), {}
    out = run_monitored(views, table, store, AnomalyMonitor())
    assert out.records and not out.alerts
    app = SimpleNamespace(producer=SimpleNamespace(send=not_delivered))
    with pytest.raises(KafkaTimeoutError):
        asyncio.run(finish_batch(app, out, fake_topics(delivered, send=not_delivered), table))
    assert table == {}
    asyncio.run(finish_batch(SimpleNamespace(producer=SimpleNamespace(send=delivered)), out, fake_topics(delivered),
                             table))
    assert len(table) == 3  # delivered: the states are written
