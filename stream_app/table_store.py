"""RocksDB table storage for tables written outside a stream event (``RECO_STORE=rocksdb://``).

Faust's RocksDB store keeps one database per partition and picks it from
the event being processed (``current_event()``); without one, ``_set``
fails an assertion. The agents here write a micro-batch's states after the
batch, with ``use_partitioner=True`` tables (``stream_app.tables``): the
producer's partitioner (murmur2 of the key) places each changelog record.
This store puts each key in the database of that same partition, so local
state, changelog and rebalancing agree, and reads find keys as Faust's store
does for partitioner tables. Memory tables (``memory://``) need none of it.
"""

from __future__ import annotations

from faust.stores import STORES, rocksdb

from stream_app.touches import partition_of_bytes


class Store(rocksdb.Store):
    """Faust's RocksDB store, placing each key by its partition rather than by the current event."""

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = partition_of_bytes(key, self.table.partitions)
        self._db_for_partition(partition).put(key, value)
        self._key_index[key] = partition

    def _del(self, key: bytes) -> None:
        partition = partition_of_bytes(key, self.table.partitions)
        self._db_for_partition(partition).delete(key)
        self._key_index.pop(key, None)


def install() -> None:
    """Make ``rocksdb://`` tables use this store (idempotent)."""
    STORES.aliases["rocksdb"] = f"{__name__}:Store"
