"""Replay fill simulator: IOC child orders against recorded MBP snapshots.

Execution model
---------------
A child order decided at event time ``t_d`` reaches the venue at
``t_a = t_d + latency`` and is matched, as an immediate-or-cancel order with
a limit price, against the *first snapshot with* ``ts_event >= t_a`` (a
snapshot stamped exactly ``t_a`` counts). A buy walks the asks best first and
takes levels with ``p_i <= limit``; a sell walks the bids and takes levels with
``p_i >= limit``. Whatever is not filled is cancelled (IOC). When no snapshot
follows ``t_a``, the side is empty or no level is within the limit, nothing
fills and :meth:`FillSimulator.execute` returns an empty list.

The walk is :func:`agent.core.impact.estimator.walk_levels`, the same function the planner's
cost curves are fitted from (one cost model, two uses). It returns totals; the
per-level split comes from walking the first ``k`` levels for ``k = 1..L``::

    F_k = filled(levels 1..k),   q_k = F_k - F_{k-1}

and one :class:`agent.core.model.Fill` is emitted per level touched (``q_k > 0``),
at that level's price, with the deterministic id ``f"{child_order_id}:f{j}"``
(``j`` = 0, 1, ... in walk order, best price first).

Own-order depletion and recovery
--------------------------------
Recorded snapshots do not know about our orders, so the liquidity we take is
kept in a ledger per book side and price. An execution at snapshot time
``t0`` that takes ``c`` shares at price ``p`` records ``(p, c, t0)``. At any
snapshot at time ``t >= t0`` our consumption still missing at ``p`` is::

    c(p, t) = sum_e c_e * 2 ** (-(t - t0_e) / H)

with ``H`` the recovery half-life (``recovery_half_life_s``). After one
half-life half of what we took is back. ``H = 0`` means our consumption is
forgotten immediately: it reduces nothing at later times, only at the same
instant ``t = t0`` (two orders filling against the very same snapshot do not
both take the same shares). Consumption at the same price accumulates: the
existing entry is decayed to the new time and the new amount added,
``c <- c * 2 ** (-(t - t0) / H) + c_new, t0 <- t``, which is exact for every
later time because exponential decay is memoryless. Entries whose decayed
size falls below ``PRUNE_SHARES`` are dropped. Buy children consume (and are
depleted on) the asks, sell children the bids. Executions are expected in
non-decreasing time (one simulator per replay run, :meth:`reset` between
runs); an earlier execution is still recorded, as its own entry.

Whole lots
----------
The venue trades whole lots of ``b = lot_shares`` shares (1 = whole shares).
What an order can take at a level is the visible size net of our consumption,
rounded *down* to whole lots::

    s'(p, t) = b * floor(max(0, s(p, t) - c(p, t)) / b)

so a partly recovered lot is not available until it has fully come back, and
a level showing an odd lot offers only its whole lots. Fills are therefore
whole lots whenever the child's quantity is (the engine and the strategies
send whole lots; only the odd-lot tail of a parent that is not a whole number
of lots is filled as its own remainder). Sizes are integer multiples of
``b`` computed as ``b * k`` with integer ``k``, never accumulated as fractions.

Fees
----
``fee_bps`` is charged on the filled notional, ``fee = fee_bps * 1e-4 *
sum_k p_k q_k`` (negative = rebate). ``Fill.price`` stays the execution price;
fees are accumulated in ``fees_dollars`` and per parent in ``fees_by_parent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.core.errors import DataError
from agent.core.impact.estimator import walk_levels
from agent.core.model import NS_PER_S, BookLike, ChildOrder, Fill, FloatArray, IntArray, Side

PRUNE_SHARES = 1e-6
"""Ledger entries whose decayed size is below this many shares are dropped."""

_LOT_TOLERANCE = 1e-9  # fraction of a lot treated as float noise when flooring
_PRICE_KEY_SCALE = 1e9  # prices are matched on integer nano-dollars


@dataclass(frozen=True)
class SimulatorSettings:
    """Fill simulator parameters.

    Attributes
    ----------
    latency_ms : decision-to-venue latency; the order fills on the first
        snapshot at or after ``decision + latency``.
    recovery_half_life_s : half-life of our consumed size at a price level
        (0 = forgotten immediately).
    fee_bps : fee on filled notional in basis points; negative is a rebate.
    lot_shares : the venue's lot; fills are whole lots of the depth left
        after our own consumption (module docstring, "Whole lots").
    """

    latency_ms: float = 5.0
    recovery_half_life_s: float = 30.0
    fee_bps: float = 0.0
    lot_shares: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {self.latency_ms}")
        if not (np.isfinite(self.recovery_half_life_s) and self.recovery_half_life_s >= 0):
            raise ValueError(
                f"recovery_half_life_s must be a finite number >= 0, got {self.recovery_half_life_s}"
            )
        if not np.isfinite(self.fee_bps):
            raise ValueError(f"fee_bps must be finite, got {self.fee_bps}")
        if not (np.isfinite(self.lot_shares) and self.lot_shares > 0):
            raise ValueError(f"lot_shares must be a finite number > 0, got {self.lot_shares}")

    @property
    def latency_ns(self) -> int:
        return round(self.latency_ms * 1e6)


@dataclass
class SimulatorStats:
    """Counters of one simulator run (reset by :meth:`FillSimulator.reset`).

    ``events_processed`` is how far into the book the simulator has matched:
    the largest snapshot row used plus one.
    """

    children: int = 0
    filled_children: int = 0
    no_snapshot: int = 0
    fills: int = 0
    requested_quantity: float = 0.0
    filled_quantity: float = 0.0
    notional_dollars: float = 0.0
    events_processed: int = 0


@dataclass
class _Ledger:
    """Our consumption on one book side: price key, price, shares, time taken."""

    key: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    qty: FloatArray = field(default_factory=lambda: np.zeros(0))
    t0: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.key)


class FillSimulator:
    """Fill IOC child orders against the snapshots of one symbol (see module docstring).

    Parameters
    ----------
    book : validated, time-ordered snapshots of ONE symbol (a ``BookBatch``).
    settings : latency, recovery half-life and fees.
    """

    def __init__(self, book: BookLike, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else SimulatorSettings()
        ts = np.asarray(book.ts_event, dtype=np.int64)
        if len(ts) > 1 and bool((np.diff(ts) < 0).any()):
            raise DataError(
                "FillSimulator needs snapshots in time order; clean the batch with "
                "BookBatch.clean() (it drops rows whose ts_event goes backwards)"
            )
        symbols = getattr(book, "symbol", None)
        if symbols is not None and len(symbols) and bool((symbols != symbols[0]).any()):
            raise DataError(
                "FillSimulator simulates one symbol; pass book.for_symbol(symbol)"
            )
        self.symbol: str | None = str(symbols[0]) if symbols is not None and len(symbols) else None
        self._ts = ts
        self._ask_px = np.asarray(book.ask_px, dtype=np.float64)
        self._ask_sz = np.asarray(book.ask_sz, dtype=np.float64)
        self._bid_px = np.asarray(book.bid_px, dtype=np.float64)
        self._bid_sz = np.asarray(book.bid_sz, dtype=np.float64)
        levels = self._ask_px.shape[1] if self._ask_px.ndim == 2 else 0
        # Row k keeps the first k+1 levels: walking it gives the cumulative fill F_k.
        self._prefix = np.tril(np.ones((levels, levels), dtype=bool))
        self._hl_ns = self.settings.recovery_half_life_s * NS_PER_S
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget our consumption, fees, stats and seen child ids (start a new run)."""
        self._ledgers: dict[Side, _Ledger] = {"buy": _Ledger(), "sell": _Ledger()}
        self._latest_ns = np.iinfo(np.int64).min
        self._seen: set[str] = set()
        self.fees_dollars = 0.0
        self.fees_by_parent: dict[str, float] = {}
        self.stats = SimulatorStats()

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def events_processed(self) -> int:
        return self.stats.events_processed

    def ledger_size(self, side: Side) -> int:
        """Number of live consumption entries on the side ``side`` orders consume."""
        return len(self._ledgers[side])

    # --------------------------------------------------------------- lookups
    def snapshot_index_at(self, ts_ns: int) -> int:
        """First row with ``ts_event >= ts_ns``; ``len(self)`` when there is none."""
        return int(np.searchsorted(self._ts, ts_ns, side="left"))

    def _raw_levels(self, row: int, side: Side) -> tuple[FloatArray, FloatArray]:
        if side == "buy":
            return self._ask_px[row], self._ask_sz[row]
        if side == "sell":
            return self._bid_px[row], self._bid_sz[row]
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")

    def _decay(self, dt_ns: IntArray) -> FloatArray:
        """``2 ** (-dt / H)`` for ``dt >= 0`` (1 at ``dt = 0`` even when ``H = 0``), 0 for ``dt < 0``."""
        dt = dt_ns.astype(np.float64)
        if self._hl_ns > 0:
            out = np.exp2(-np.maximum(dt, 0.0) / self._hl_ns)
        else:
            out = (dt == 0).astype(np.float64)
        return np.where(dt >= 0, out, 0.0)

    def depleted_levels(self, row: int, side: Side) -> tuple[FloatArray, FloatArray]:
        """Levels an order of side ``side`` can take at ``row``: whole lots net of our consumption.

        ``side`` is the *order* side: ``"buy"`` returns the asks, ``"sell"`` the
        bids. Sizes are ``b * floor(max(0, s - c) / b)`` with ``c = sum_e c_e
        2^(-(t - t0_e)/H)`` over ledger entries at the same price with ``t0_e
        <= t`` and ``b`` the lot (module docstring).

        Returns
        -------
        px, sz : (levels,) copies, best first.
        """
        if not 0 <= row < len(self._ts):
            raise IndexError(f"row {row} outside the book (0..{len(self._ts) - 1})")
        px, sz = self._raw_levels(row, side)
        ledger = self._ledgers[side]
        if len(ledger) == 0:
            return px.copy(), self._whole_lots(sz)
        live = ledger.qty * self._decay(self._ts[row] - ledger.t0)
        match = _price_keys(px)[:, None] == ledger.key[None, :]
        taken = match.astype(np.float64) @ live
        return px.copy(), self._whole_lots(np.maximum(sz - taken, 0.0))

    def _whole_lots(self, sz: FloatArray) -> FloatArray:
        """``b * floor(sz / b)``; a relative 1e-9 of a lot absorbs float noise (``299.9999999999`` is 300)."""
        lot = self.settings.lot_shares
        return lot * np.floor(sz / lot + _LOT_TOLERANCE)

    # ------------------------------------------------------------- execution
    def execute(self, child: ChildOrder, decision_ts_ns: int) -> list[Fill]:
        """Fill ``child`` (IOC, limit ``child.limit_price``) after the configured latency.

        Returns one :class:`Fill` per price level touched, best price first, at
        that level's price and ``ts_event`` of the snapshot matched; an empty
        list when nothing fills. ``sum(f.quantity) <= child.quantity`` and no
        fill is beyond the limit. Fees are added to ``fees_dollars``.

        Raises
        ------
        ValueError : the child was already executed in this run (fill ids
            would repeat; call :meth:`reset` between runs) or is for another symbol.
        """
        if child.child_order_id in self._seen:
            raise ValueError(
                f"child order {child.child_order_id!r} was already executed; fill ids would repeat "
                "(use one FillSimulator per replay run or call reset())"
            )
        if self.symbol is not None and child.symbol != self.symbol:
            raise ValueError(f"child order for {child.symbol!r} sent to the simulator of {self.symbol!r}")
        self._seen.add(child.child_order_id)
        stats = self.stats
        stats.children += 1
        qty = float(child.quantity)
        if not qty > 0:
            return []
        stats.requested_quantity += qty
        row = self.snapshot_index_at(int(decision_ts_ns) + self.settings.latency_ns)
        if row >= len(self._ts):
            stats.no_snapshot += 1
            return []
        stats.events_processed = max(stats.events_processed, row + 1)
        side = child.side
        px, sz = self.depleted_levels(row, side)
        take = self._walk(px, sz, qty, float(child.limit_price), side == "buy")
        touched = np.flatnonzero(take > 0)
        if len(touched) == 0:
            return []
        t_fill = int(self._ts[row])
        q_lv, p_lv = take[touched], px[touched]
        self._consume(side, p_lv, q_lv, t_fill)
        self._account(child.parent_id, q_lv, p_lv)
        return [
            Fill(
                fill_id=f"{child.child_order_id}:f{j}",
                child_order_id=child.child_order_id,
                parent_id=child.parent_id,
                quantity=float(q),
                price=float(p),
                ts_event=t_fill,
            )
            for j, (q, p) in enumerate(zip(q_lv.tolist(), p_lv.tolist(), strict=True))
        ]

    def _walk(self, px: FloatArray, sz: FloatArray, qty: float, limit: float, buy: bool) -> FloatArray:
        """Shares taken at each level, ``q_k = F_k - F_{k-1}`` (module docstring)."""
        n_lv = len(px)
        if n_lv == 0:
            return np.zeros(0)
        cum, _ = walk_levels(np.broadcast_to(px, (n_lv, n_lv)), np.where(self._prefix, sz, 0.0), qty,
                             limit, buy=buy)
        take = cum.copy()
        take[1:] -= cum[:-1]
        return take

    def _account(self, parent_id: str, q_lv: FloatArray, p_lv: FloatArray) -> None:
        """Fees (``fee_bps`` of the notional) and fill statistics of one execution."""
        notional = float(q_lv @ p_lv)
        fee = self.settings.fee_bps * 1e-4 * notional
        self.fees_dollars += fee
        self.fees_by_parent[parent_id] = self.fees_by_parent.get(parent_id, 0.0) + fee
        stats = self.stats
        stats.filled_children += 1
        stats.fills += len(q_lv)
        stats.filled_quantity += float(q_lv.sum())
        stats.notional_dollars += notional

    def _consume(self, side: Side, px: FloatArray, qty: FloatArray, t_ns: int) -> None:
        """Record ``qty`` taken at ``px`` at ``t_ns``: merge same-price entries, then prune."""
        ledger = self._ledgers[side]
        keys = _price_keys(px)
        merge = (keys[:, None] == ledger.key[None, :]) & (ledger.t0[None, :] <= t_ns)
        carried = merge.astype(np.float64) @ (ledger.qty * self._decay(t_ns - ledger.t0))
        keep = ~merge.any(axis=0)
        key = np.concatenate([ledger.key[keep], keys])
        amount = np.concatenate([ledger.qty[keep], carried + qty])
        t0 = np.concatenate([ledger.t0[keep], np.full(len(keys), t_ns, np.int64)])
        self._latest_ns = max(self._latest_ns, t_ns)
        alive = amount * self._decay(self._latest_ns - t0) >= PRUNE_SHARES
        self._ledgers[side] = _Ledger(key[alive], amount[alive], t0[alive])


def _price_keys(px: FloatArray) -> IntArray:
    """Integer nano-dollar keys so that equal prices match exactly (NaN -> -1)."""
    finite = np.isfinite(px)
    return np.where(finite, np.rint(np.where(finite, px, 0.0) * _PRICE_KEY_SCALE), -1).astype(np.int64)
