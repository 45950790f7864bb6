"""A Faust worker whose agent does nothing per event: the framework's own limit.

It reports how many events it has seen to Redis (``{prefix}:counters`` hash,
``events_in``) every 50 ms, so the benchmark reads it like the real worker's.
Run: ``python benchmarks/noop_worker.py`` with the same RECO_* settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faust
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_app.app import create_app  # noqa: E402
from stream_app.redis_layout import RedisLayout  # noqa: E402
from stream_app.settings import Settings  # noqa: E402
from stream_app.topics import declare_topics  # noqa: E402


def main() -> None:
    settings = Settings.from_env()
    app = create_app(settings)
    topics = declare_topics(app, settings)
    seen = [0]

    @app.agent(topics.events, name="noop")
    async def noop(stream: faust.StreamT) -> None:
        async for _ in stream:
            seen[0] += 1

    @app.timer(0.05)
    async def report() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            await client.hset(RedisLayout(settings.redis_prefix).counters, "events_in", seen[0])
        finally:
            await client.aclose()

    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.spinner = None  # as in stream_app.worker: keeps the root logger off DEBUG
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
