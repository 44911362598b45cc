"""The embedded Dagster instance's event log storage, which keeps its SQLite connections open (the instance's
`dagster.yaml`, which names it, is `sommelier_core.settings.write_instance_config`'s).

Dagster's SQLite event log storage creates a database engine, opens a connection and closes it (checkpointing
the write-ahead log) for every event it stores or reads: about 2 ms a time, and an index run stores some twenty
events per model (a materialization and a planned materialization per stage, each written to the run's database
and mirrored to the index database). `KeptOpenSqliteEventLogStorage` is the same storage, same files and schema,
with one open connection per database, kept for the process. Stores made before it keep their history: only
the way the files are opened changes. The cluster's instance stores events in PostgreSQL and does not use it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

OPEN_DATABASES = 16
"""Databases a process keeps a connection to (the index and the most recently used runs'); the least recently
used beyond that is closed."""


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage with one connection per database kept open by the process.

    A write to a run's database is checkpointed into its file at once, as closing the connection did, so a
    Dagster UI following the run (it watches that file) sees each event when it happens. After a fork the
    child opens its own connections (SQLite's must not cross a fork)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._inherited: list[Engine] = []
        self._pid = os.getpid()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        if self._pid != os.getpid():  # forked: the parent's connections stay the parent's, never closed here
            self._inherited.extend(self._engines.values())
            self._engines.clear()
            self._pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            create_db_conn_string(self._base_dir, shard),
            poolclass=StaticPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn:
                sqlite = conn.connection.dbapi_connection
                changes = sqlite.total_changes
                with conn.begin():
                    yield conn
                if shard != INDEX_SHARD_NAME and sqlite.total_changes != changes:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has the table; a table found stays found (Dagster asks for every event,
        sometimes from inside a connection, so this opens its own as Dagster's does)."""
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def close_connections(self) -> None:
        """Close every database this process holds open (they reopen on next use)."""
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self.close_connections()
        super().wipe()

    def dispose(self) -> None:
        self.close_connections()
        super().dispose()
