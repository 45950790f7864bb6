"""Faust's worker consumer takes its Fetch wait from the settings (Faust hard-codes 1,500 ms)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.transport.drivers import aiokafka as driver

from stream_app.tansu_compat import set_fetch_max_wait


def test_the_worker_consumer_waits_at_most_the_configured_fetch_time(monkeypatch):
    thread_cls = driver.AIOKafkaConsumerThread
    monkeypatch.setattr(thread_cls, "_create_worker_consumer", thread_cls._create_worker_consumer)
    faust_made = SimpleNamespace(_fetch_max_wait_ms=1500)  # what Faust's own method returns (a stub consumer)
    monkeypatch.setattr(thread_cls, "_faust_create_worker_consumer", lambda self, transport: faust_made,
                        raising=False)
    set_fetch_max_wait(37)
    set_fetch_max_wait(20)  # a second app in the process re-patches, it does not stack
    assert thread_cls._create_worker_consumer(None, None) is faust_made
    assert faust_made._fetch_max_wait_ms == 20
