"""Market data decoded beside the event loop: large ``mbp10.v1`` batches go to a process of their own.

Decoding is the event loop's largest cost on a backlog (``feeds.wire.fast_mbp10.decode_books``:
~5-10 us a message, under the same GIL as the fetch, the publishing and the engine thread).
:class:`BookDecoder` sends a batch of at least ``min_records`` values to one worker process and
awaits the columns; handing the values over and taking the columns back costs the loop well under
a microsecond a message. Smaller batches (a paced feed's few records) are decoded inline: a round
trip to the worker would only add latency.

The worker (``python -m agent.live.book_decoder``, :func:`serve`) runs the very function the inline
path runs, so verdicts, reasons and columns are the same whichever way a batch goes
(``tests/unit/agent/test_book_decoder.py``). It is a plain child process talking over its stdin and
stdout (frames: an 8-byte length, then a pickle; the two ends are the same program, nothing else
writes to those pipes), not ``multiprocessing``: ``spawn`` and ``forkserver`` re-import the
embedding program's main module, and ``fork`` copies a process whose threads hold locks.

Nothing is lost when the worker fails: the batch's values are still in hand and are decoded
inline, the failure is logged (event ``decode_worker``) and counted
(``mpc_agent_decode_worker_failures_total``), and a new worker is started for a later large batch
(after :data:`RESTART_BACKOFF_S`, doubled while starts keep failing). The worker is started at the first batch large
enough to need it (a service that never sees one never starts it), or at the service's start with
:meth:`BookDecoder.prestart` (the Kafka agent: a restart or a takeover begins with a backlog); until it
has imported what it needs, batches are decoded inline, so a start never delays a step. It ignores SIGINT (the agent's
shutdown decides when it goes) and exits when its stdin closes: at :meth:`BookDecoder.close`, or
when the agent dies however it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from agent.live.events import emit
from agent.live.metrics import AgentMetrics
from feeds.wire.fast_mbp10 import DecodedBooks, decode_books

log = logging.getLogger("agent.live.book_decoder")

RESTART_BACKOFF_S = 5.0
"""A worker that failed is replaced after this long, doubled after each failure in a row up to
:data:`MAX_RESTART_BACKOFF_S` (inline decoding in between)."""
MAX_RESTART_BACKOFF_S = 300.0
_ROOT = str(Path(__file__).resolve().parents[2])  # the worker imports this checkout's packages
READY = b"ready"
_HEADER = struct.Struct("!Q")
_STREAM_LIMIT = 1 << 20
PIPE_BYTES = 1 << 20


class WorkerError(RuntimeError):
    """The worker refused a job or answered something that is not a decoded batch."""


class BookDecoder:
    """``decode_books`` inline for small batches, in a worker process for large ones (module docstring).

    Parameters
    ----------
    max_bytes : the size limit (``oversize``), as ``decode_books``'s.
    min_records : batches of at least this many values go to the worker; None = always inline.
    metrics : counts the values decoded each way and the worker's failures.
    """

    def __init__(self, *, max_bytes: int, min_records: int | None, metrics: AgentMetrics | None = None) -> None:
        self.max_bytes, self.min_records, self.metrics = max_bytes, min_records, metrics
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._ready = False
        self._failed_at = float("-inf")
        self._backoff_s = RESTART_BACKOFF_S
        self._seq = 0  # job number: an answer must carry its job's
        self._lock = asyncio.Lock()
        self.offloaded = self.inline = self.failures = 0  # values decoded each way, worker failures

    @property
    def ready(self) -> bool:
        """A worker is up and takes large batches."""
        return self._ready

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when none runs)."""
        return None if self._proc is None else self._proc.pid

    async def decode(self, values: Sequence[bytes | None]) -> DecodedBooks:
        """``decode_books(values)``, in the worker when the batch is large and a worker is ready."""
        if self.min_records is None or len(values) < self.min_records or not self._worker():
            return self._inline(values)
        async with self._lock:  # one job at a time on the pipe
            proc = self._proc
            if not self._ready or proc is None:  # failed or closed while this job waited for the lock
                return self._inline(values)
            try:
                out = await self._roundtrip(values)
            except Exception as exc:  # a dead worker (EOF, broken pipe), a wrong or unreadable answer
                if self._proc is proc:  # (not when close() took the worker away meanwhile)
                    await self._fail(exc)
                return self._inline(values)
            except BaseException:  # cancelled mid-job: its answer must never be read as the next job's
                if self._proc is proc:
                    self._discard()
                raise
        self._count("process", len(values))
        return out

    def prestart(self) -> None:
        """Start the worker in the background now, not at the first large batch (a Kafka agent at
        start-up: the backlog of its downtime, or of a partition taken over, comes first); nothing waits
        for it and batches are decoded inline until it is ready."""
        if self.min_records is not None:
            self._worker()

    async def warm(self) -> bool:
        """Start the worker now (not at the first large batch) and wait until it is ready or has failed;
        True when it is ready (tests, and a caller that knows a backlog is coming)."""
        if self.min_records is None:
            return False
        self._failed_at = float("-inf")
        self._worker()
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        return self._ready

    async def close(self) -> None:
        """Stop the worker (idempotent): its stdin closes, it exits; killed if it does not within 2 s."""
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        proc, self._proc, self._ready = self._proc, None, False
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    # ----------------------------------------------------------- internals
    def _inline(self, values: Sequence[bytes | None]) -> DecodedBooks:
        self._count("inline", len(values))
        return decode_books(values, max_bytes=self.max_bytes)

    def _worker(self) -> bool:
        """True when a worker is ready; otherwise start one (if none is starting and one is due)."""
        if self._ready:
            return True
        if self._starting is None and time.monotonic() - self._failed_at >= self._backoff_s:
            self._starting = asyncio.get_running_loop().create_task(self._start(), name="mpc-decode-worker-start")
        return False

    async def _start(self) -> None:
        try:
            path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.live.book_decoder", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=_STREAM_LIMIT, env={**os.environ, "PYTHONPATH": path})
            if await self._read() != READY:
                raise WorkerError("the worker did not say it was ready")
        except Exception as exc:  # whatever went wrong, the batches are decoded inline until a later start
            await self._fail(exc)
            return
        self._ready, self._backoff_s = True, RESTART_BACKOFF_S
        emit(log, logging.INFO, "decode_worker", "market-data decode worker ready (pid %d, batches of %d values "
             "or more)", self._proc.pid, self.min_records, state="ready", pid=self._proc.pid,
             min_records=self.min_records)

    async def _roundtrip(self, values: Sequence[bytes | None]) -> DecodedBooks:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._seq += 1
        job = pickle.dumps((self._seq, list(values), self.max_bytes), protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(_HEADER.pack(len(job)))
        proc.stdin.write(job)
        await proc.stdin.drain()
        answer = await self._read()
        seq, out = answer if isinstance(answer, tuple) and len(answer) == 2 else (None, answer)
        if seq != self._seq:
            raise WorkerError(f"the worker answered job {seq!r} to job {self._seq}: {out!r:.200}")
        if not isinstance(out, DecodedBooks):
            raise WorkerError(f"the worker answered {type(out).__name__}: {out!r:.200}")
        if len(out.books) + len(out.rejected) != len(values):
            raise WorkerError(f"the worker decoded {len(out.books) + len(out.rejected)} of {len(values)} values")
        return out

    async def _read(self) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        (n,) = _HEADER.unpack(await proc.stdout.readexactly(_HEADER.size))
        return pickle.loads(await proc.stdout.readexactly(n))

    def _discard(self) -> None:
        """Kill the worker at once (its pipe may hold an answer no one will read); a new one starts at
        the next large batch."""
        proc, self._proc, self._ready, self._starting = self._proc, None, False, None
        if proc is not None and proc.returncode is None:
            proc.kill()

    async def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        if self._failed_at > float("-inf") and not self._ready:  # failed again before a worker was ready
            self._backoff_s = min(2 * self._backoff_s, MAX_RESTART_BACKOFF_S)
        emit(log, logging.ERROR, "decode_worker", "market-data decode worker failed (%s: %s); decoding inline, "
             "a new worker in %.0f s or later", type(exc).__name__, exc, self._backoff_s, state="failed",
             error=f"{type(exc).__name__}: {exc}"[:300])
        if self.metrics is not None:
            self.metrics.decode_worker_failures.inc()
        proc, self._proc, self._ready, self._starting = self._proc, None, False, None
        self._failed_at = time.monotonic()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def _count(self, where: str, n: int) -> None:
        if where == "process":
            self.offloaded += n
        else:
            self.inline += n
        if self.metrics is not None:
            self.metrics.md_decoded.labels(where=where).inc(n)


def _widen(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (Linux; 64 KiB by default): a batch crosses it in a few writes, not ~30."""
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size for this user: keep the default
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


# ------------------------------------------------------------------ the worker
def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The worker's loop: read ``(seq, values, max_bytes)`` frames, answer each with ``(seq, result)``
    where ``result`` is ``decode_books``'s (or the text of the exception it raised; ``seq`` None when the
    frame itself could not be read); return at the end of ``inp``."""
    _write(out, READY)
    while True:
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        (n,) = _HEADER.unpack(head)
        job = inp.read(n)
        if len(job) < n:
            return
        seq = None
        try:
            seq, values, max_bytes = pickle.loads(job)
            result: Any = decode_books(values, max_bytes=max_bytes)
        except Exception as exc:  # the parent logs it and decodes the batch itself
            result = f"{type(exc).__name__}: {exc}"
        _write(out, (seq, result))


def _write(out: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print goes to stderr, never into a frame
    for fd in (sys.stdin.fileno(), frames.fileno()):  # the pipes to and from the agent
        _widen(fd)
    serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    main()
