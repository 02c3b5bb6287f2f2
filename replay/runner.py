"""Historical replay: one parent order, several strategies, one or many windows.

Mechanics (the same for every strategy, so the comparison is fair)
-----------------------------------------------------------------
For each strategy a fresh :class:`agent.core.engine.ExecutionEngine` gets the
parent order, then the symbol's snapshots *from the session start* (so the
volume, volatility and impact estimators are warm at the parent's start)
through :class:`agent.core.driver.Driver`, the same loop as the live service:
period chunk by period chunk, each child order executed at once on the
:class:`replay.simulator.FillSimulator` at its decision time ``child.ts_event``
(plus the simulator's latency), its fills back through ``engine.on_fill``
before the next chunk, so the next decision sees the remaining quantity from fills.

``--starts K`` runs K windows of the same length spread evenly over the
session (first at the session start, last ending at the session end, starts
on the period grid) and every strategy on every window, so strategies can be
compared *paired* by window.

VWAP needs an expected volume profile. With one day of data it is learned
from that same day (look-ahead: it knows the day's volume shape; the report
says so). With several days the last day is replayed and the profile (and the
engine's intraday profile) come from the other days only.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from agent.core.driver import Driver
from agent.core.engine import ExecutionEngine
from agent.core.forecast.profile import IntradayProfile
from agent.core.model import NS_PER_S, BookLike, ChildOrder, Fill, ParentOrder, Side
from agent.core.policy import DecisionRecord, EngineSettings, PolicyFactory
from feeds.book import BookBatch
from replay.simulator import FillSimulator, SimulatorSettings
from replay.strategies import STRATEGIES, VolumeCurve, policy_factory

__all__ = [
    "ReplayResult",
    "ReplaySpec",
    "StrategyRun",
    "WindowRun",
    "replay",
    "run_strategy",
    "window_starts",
]


@dataclass(frozen=True)
class ReplaySpec:
    """One parent order to replay (times in ns UTC) and the strategies to compare."""

    symbol: str
    side: Side
    quantity: float
    start_ns: int
    end_ns: int
    period_s: float = 60.0
    max_participation: float | None = None
    risk_aversion: float = 0.0
    strategies: tuple[str, ...] = STRATEGIES
    engine: EngineSettings = field(default_factory=EngineSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        if not self.strategies:
            raise ValueError("no strategy to replay")
        self.order  # noqa: B018 -- the one ParentOrder validation, at construction

    @property
    def order(self) -> ParentOrder:
        """The parent order this spec replays (the one domain type; its checks apply)."""
        return ParentOrder(
            parent_id="replay", symbol=self.symbol, side=self.side, quantity=self.quantity,
            start_ns=self.start_ns, end_ns=self.end_ns, period_s=self.period_s,
            max_participation=self.max_participation, risk_aversion=self.risk_aversion,
            lot_size=self.simulator.lot_shares,  # orders in the venue's lots
        )

    def parent(self, start_ns: int, end_ns: int, strategy: str) -> ParentOrder:
        """The order moved to one window, with an id naming the strategy and the window start."""
        return dataclasses.replace(self.order, parent_id=f"{strategy}-{start_ns // NS_PER_S}",
                                   start_ns=start_ns, end_ns=end_ns)


@dataclass
class StrategyRun:
    """Everything one strategy did on one window (input of the TCA)."""

    strategy: str
    parent: ParentOrder
    children: list[ChildOrder]
    fills: list[Fill]
    decisions: list[DecisionRecord]
    fees_dollars: float
    counters: dict[str, int]

    @property
    def filled(self) -> float:
        return float(sum(f.quantity for f in self.fills))


@dataclass
class WindowRun:
    start_ns: int
    end_ns: int
    runs: dict[str, StrategyRun]


@dataclass
class ReplayResult:
    spec: ReplaySpec
    book: BookBatch
    windows: list[WindowRun]
    volume_curve: VolumeCurve
    history_days: int
    simulator_events: int = 0
    profile: IntradayProfile | None = None  # the engine's intraday profile (None = flat)


def run_strategy(
    book: BookBatch,
    parent: ParentOrder,
    factory: PolicyFactory,
    simulator: FillSimulator,
    *,
    strategy: str,
    settings: EngineSettings | None = None,
    profile: object | None = None,
    feed_from_ns: int | None = None,
) -> StrategyRun:
    """Drive a fresh engine over ``book`` (ONE symbol) for ``parent``; see the module docstring.

    ``simulator`` is reset first (one run = one ledger of our consumption).
    ``feed_from_ns``: first event time fed to the engine (default: the book's first row).
    """
    engine = ExecutionEngine(settings, policy_factory=factory, profile=profile)  # type: ignore[arg-type]
    engine.submit(parent)
    simulator.reset()
    ts = book.ts_event
    lo = 0 if feed_from_ns is None else int(np.searchsorted(ts, feed_from_ns, side="left"))
    hi = int(np.searchsorted(ts, parent.end_ns, side="left"))
    driver = Driver(engine, venue=lambda child: simulator.execute(child, child.ts_event))
    res = driver.feed(cast(BookLike, book[lo:hi]), parent.symbol)
    pid = parent.parent_id
    return StrategyRun(
        strategy=strategy, parent=parent, children=res.children, fills=res.fills,
        decisions=[d for d in res.decisions if d.parent_id == pid],
        fees_dollars=float(simulator.fees_by_parent.get(pid, 0.0)),
        counters=dict(engine.counters),
    )


def window_starts(session_start_ns: int, session_end_ns: int, length_ns: int, k: int,
                  period_ns: int) -> list[int]:
    """``k`` window starts of length ``length_ns`` spread evenly over the session.

    The first starts at the session start, the last ends at (or just before)
    the session end; starts are rounded down to the period grid of the session.
    """
    if k <= 1:
        return [session_start_ns]
    span = session_end_ns - length_ns - session_start_ns
    if span < 0:
        raise ValueError("the window is longer than the session")
    if span < (k - 1) * period_ns:
        raise ValueError(
            f"{k} starts do not fit: the session leaves {span / 60e9:.1f} min for the starts; "
            "use a shorter window (--start/--end) or fewer --starts"
        )
    raw = session_start_ns + np.linspace(0, span, k)
    steps = np.floor((raw - session_start_ns) / period_ns).astype(np.int64)
    return [int(session_start_ns + s * period_ns) for s in steps]


def _volume_curve(book: BookBatch, history: Sequence[BookBatch]) -> tuple[VolumeCurve, int]:
    days = [h for h in history if len(h)]
    if days:
        ts = np.concatenate([h.ts_event[h.action == "T"] for h in days])
        sz = np.concatenate([h.size[h.action == "T"] for h in days])
        return VolumeCurve.from_trades(ts, sz, days=len(days), look_ahead=False), len(days)
    t = book.action == "T"
    return VolumeCurve.from_trades(book.ts_event[t], book.size[t], days=1, look_ahead=True), 0


def _intraday_profile(history: Sequence[BookBatch]) -> IntradayProfile | None:
    if not history:
        return None
    return IntradayProfile.learn([cast(BookLike, h) for h in history])


def replay(
    book: BookBatch,
    spec: ReplaySpec,
    *,
    starts: int = 1,
    session: tuple[int, int] | None = None,
    history: Sequence[BookBatch] = (),
    progress: bool = False,
    profile: IntradayProfile | None = None,
) -> ReplayResult:
    """Replay ``spec`` on ``book`` (one symbol, one trading day) for every strategy.

    Parameters
    ----------
    book : validated snapshots of ``spec.symbol`` for the replayed day.
    starts : number of windows (``spec.end - spec.start`` long) spread over ``session``.
    session : (first, last) event time of the session; default the book's first/last row.
    history : other days of the same symbol (VWAP curve and intraday profile; no look-ahead).
    profile : the engine's intraday profile (e.g. ``mpc-agent profile`` output); default:
        learned from ``history`` (flat without history).
    progress : show a tqdm bar on stderr (appears only for runs longer than 2 s).
    """
    if len(book) == 0:
        raise ValueError(f"no data for symbol {spec.symbol!r}")
    ts = book.ts_event
    s0, s1 = session if session is not None else (int(ts[0]), int(ts[-1]) + 1)
    length = spec.end_ns - spec.start_ns
    period_ns = round(spec.period_s * NS_PER_S)
    begins = [spec.start_ns] if starts <= 1 else window_starts(s0, s1, length, starts, period_ns)
    curve, n_hist = _volume_curve(book, history)
    if profile is None:
        profile = _intraday_profile(history)
    factories = {name: policy_factory(name, volume_curve=curve) for name in spec.strategies}
    sim = FillSimulator(cast(BookLike, book), spec.simulator)
    windows: list[WindowRun] = []
    events = 0
    from tqdm import tqdm

    bar = tqdm(total=len(begins) * len(factories), disable=not progress, file=sys.stderr,
               delay=2.0, unit="run", desc="replay")
    try:
        for b in begins:
            runs: dict[str, StrategyRun] = {}
            for name, fac in factories.items():
                runs[name] = run_strategy(
                    book, spec.parent(b, b + length, name), fac, sim, strategy=name,
                    settings=spec.engine, profile=profile, feed_from_ns=s0,
                )
                events += sim.events_processed
                bar.update(1)
            windows.append(WindowRun(b, b + length, runs))
    finally:
        bar.close()
    return ReplayResult(spec, book, windows, curve, n_hist, events, profile)
