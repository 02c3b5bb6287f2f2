"""JSONL sink: child orders (and fills, DLQ copies) to files instead of Kafka.

Implements the ``feeds.ports.Sink`` protocol, so the live service writes to
files in the "live without Kafka" mode with the very same code path. Topics
mapped in ``paths`` get one line per record: the record value as produced
(compact JSON, e.g. ``child_order.v1``). Other topics (DLQ, ...) go to
``{default_dir}/{topic}.jsonl`` as an envelope ``{"key", "headers", "value"}``
(the value decoded as UTF-8 with replacement, since a DLQ copy may not be
valid JSON); they are dropped when ``default_dir`` is None.
Files are truncated on ``start()`` and flushed after every ``send_many``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from agent.core.errors import FeedError
from feeds.ports import AsyncComponent, Headers, OutRecord


class JsonlSink(AsyncComponent):
    """Write records to JSON-lines files, one file per topic (see the module docstring)."""

    def __init__(self, paths: Mapping[str, str | Path], *, default_dir: str | Path | None = None) -> None:
        self.paths = {t: Path(p) for t, p in paths.items()}
        self._raw_topics = frozenset(self.paths)
        self.default_dir = Path(default_dir) if default_dir is not None else None
        self._files: dict[str, IO[bytes]] = {}
        self._started = False
        self.counts: dict[str, int] = {}

    async def start(self) -> None:
        if self._started:
            return
        for topic, path in self.paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[topic] = path.open("wb")
        self._started = True

    async def stop(self) -> None:
        files, self._files = self._files, {}
        for f in files.values():
            f.close()
        self._started = False

    def _file(self, topic: str) -> IO[bytes] | None:
        f = self._files.get(topic)
        if f is None and self.default_dir is not None:
            self.default_dir.mkdir(parents=True, exist_ok=True)
            f = self._files[topic] = (self.default_dir / f"{topic}.jsonl").open("wb")
            self.paths[topic] = self.default_dir / f"{topic}.jsonl"
        return f

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                   headers: Headers = ()) -> None:
        await self.send_many([OutRecord(topic, value, key, tuple(headers))])

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        if not self._started:
            raise FeedError("JsonlSink used before start(); use 'async with sink:'")
        touched: set[str] = set()
        for r in records:
            f = self._file(r.topic)
            if f is None:
                continue
            if r.topic in self._raw_topics:
                f.write((r.value or b"null") + b"\n")
            else:
                env = {"key": None if r.key is None else r.key.decode("utf-8", "replace"),
                       "headers": {k: v.decode("utf-8", "replace") for k, v in r.headers},
                       "value": None if r.value is None else r.value.decode("utf-8", "replace")}
                f.write(json.dumps(env).encode() + b"\n")
            self.counts[r.topic] = self.counts.get(r.topic, 0) + 1
            touched.add(r.topic)
        for t in touched:
            self._files[t].flush()
