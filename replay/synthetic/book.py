"""Sequential limit-order-book engine behind ``replay.synthetic.day``.

The random inputs of a day (event times, fair value, target spread, event
kinds, distances, sizes, uniforms) are drawn up front, vectorised, by
``replay.synthetic.day``. Applying them to the book is inherently sequential (each
event depends on the book the previous ones left), so this module runs one
pass over the events on integer tick grids:

- ``bid[t]``, ``ask[t]``: resting shares at price ``t * tick``; ``bct``/``act``
  the number of orders there. The best prices ``bb < ba`` are tracked; the
  book never locks or crosses because an order priced at or through the
  opposite best is *marketable*: it walks the opposite side up to its limit and
  only the remainder rests.
- Only events that touch the ten visible levels produce a row (MBP-10 does not
  publish changes deeper in the book); hidden depth becomes visible when the
  levels above it go away.
- A trade that consumes ``q`` shares at one level produces Databento's pair of
  rows: ``T`` (aggressor side, book before the fill) then ``C`` on the resting
  side at the same price and timestamp with size ``q`` (book after the fill).

Output snapshots are the visible ten levels per side as ``(3, 10)`` int64
arrays: tick prices (``-1`` when empty), sizes and order counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LEVELS = 10
H_STALE = 20.0  # cancel-weight multiplier for quotes through the fair-value anchor
H_FAR = 5.0  # ... and for quotes further than the profile width from it
MAX_TAKE = 0.8  # an aggressive order takes at most this share of the visible opposite depth

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EventDraws:
    """Pre-drawn inputs, one entry per simulated event (all length ``n``).

    Attributes
    ----------
    fair : fair value in ticks (float).
    spread : target spread in whole ticks (>= 1).
    kind_u, side_u, pick_u, cancel_u : uniforms on [0, 1).
    bid_side : the side of a book (non-trade) event.
    dist : distance in ticks of an add from the fair-value anchor (>= 0).
    add_size, cancel_size, mo_size : share quantities (> 0).
    mod_size : signed size change of a modify (< 0 shrinks a level, never to zero).
    trade_prob : probability that the event is a market order.
    depth_target : Q*, shares per side within K ticks at which adds and cancels balance
        (varies with the time of day and the depth deviation).
    """

    fair: F64
    spread: I64
    kind_u: F64
    side_u: F64
    pick_u: F64
    cancel_u: F64
    bid_side: npt.NDArray[np.bool_]
    dist: I64
    add_size: I64
    cancel_size: I64
    mod_size: I64
    mo_size: I64
    trade_prob: F64
    depth_target: F64


@dataclass(frozen=True, slots=True)
class BookParams:
    """Per-symbol constants of the book dynamics (see ``replay.synthetic.day``)."""

    profile_ticks: int  # K: adds land within K ticks of the anchor
    modify_prob: float  # share of book events that are modifies
    side_scale_ticks: float  # kappa of the aggressor-side logistic
    improve_prob: float  # chance that an add improves a spread wider than the target
    initial_levels: I64  # initial depth per tick at distance d = 0..K-1


@dataclass(frozen=True, slots=True)
class EmittedRows:
    """The rows one symbol's book produced (length m)."""

    event: I64  # index of the simulated event that produced the row
    action: npt.NDArray[np.str_]
    side: npt.NDArray[np.str_]
    depth: I64
    price: I64  # ticks
    size: I64
    bid: I64  # (m, 3, 10): ticks / sizes / counts
    ask: I64


class _Book:
    def __init__(self, grid: int, window: int) -> None:
        self.bid = np.zeros(grid, np.int64)
        self.ask = np.zeros(grid, np.int64)
        self.bct = np.zeros(grid, np.int64)
        self.act = np.zeros(grid, np.int64)
        self.window = window
        self.bb = 0
        self.ba = grid - 1
        self.bsnap = np.zeros((3, LEVELS), np.int64)
        self.asnap = np.zeros((3, LEVELS), np.int64)
        self.rows: list[tuple[int, str, str, int, int, int]] = []
        self.bsnaps: list[I64] = []
        self.asnaps: list[I64] = []

    # ----------------------------------------------------------------- views
    def refresh(self, bid: bool) -> None:
        snap = np.zeros((3, LEVELS), np.int64)
        snap[0] = -1
        if bid:
            lo = max(self.bb - self.window, 0)
            ticks = (np.flatnonzero(self.bid[lo : self.bb + 1]) + lo)[::-1][:LEVELS]
            grid, cnt = self.bid, self.bct
        else:
            ticks = np.flatnonzero(self.ask[self.ba : self.ba + self.window])[:LEVELS] + self.ba
            grid, cnt = self.ask, self.act
        k = len(ticks)
        snap[0, :k] = ticks
        snap[1, :k] = grid[ticks]
        snap[2, :k] = cnt[ticks]
        if bid:
            self.bsnap = snap
        else:
            self.asnap = snap

    def emit(self, i: int, action: str, side: str, depth: int, price: int, size: int) -> None:
        self.rows.append((i, action, side, depth, price, size))
        self.bsnaps.append(self.bsnap)
        self.asnaps.append(self.asnap)

    def rank(self, bid: bool, tick: int) -> int:
        """Number of occupied price levels strictly better than ``tick``."""
        if bid:
            return int(np.count_nonzero(self.bid[tick + 1 : self.bb + 1]))
        return int(np.count_nonzero(self.ask[self.ba : tick]))

    def new_best(self, bid: bool) -> None:
        if bid:
            lo = max(self.bb - self.window, 0)
            nz = np.flatnonzero(self.bid[lo : self.bb])
            if len(nz) == 0:
                raise RuntimeError("synthetic book: bid side emptied (invariant broken)")
            self.bb = lo + int(nz[-1])
        else:
            nz = np.flatnonzero(self.ask[self.ba + 1 : self.ba + 1 + self.window])
            if len(nz) == 0:
                raise RuntimeError("synthetic book: ask side emptied (invariant broken)")
            self.ba = self.ba + 1 + int(nz[0])

    # --------------------------------------------------------------- actions
    def add(self, i: int, bid: bool, tick: int, size: int) -> None:
        grid, cnt = (self.bid, self.bct) if bid else (self.ask, self.act)
        r = self.rank(bid, tick)
        grid[tick] += size
        cnt[tick] += 1
        if bid and tick > self.bb:
            self.bb = tick
        elif not bid and tick < self.ba:
            self.ba = tick
        if r < LEVELS:
            self.refresh(bid)
            self.emit(i, "A", "B" if bid else "A", r, tick, size)

    def take(self, i: int, buy: bool, size: int, limit: int | None) -> int:
        """Aggressive order: walk the opposite side; return the unfilled quantity."""
        snap = self.asnap if buy else self.bsnap
        rem = min(size, int(MAX_TAKE * snap[1].sum()))
        left = size - rem
        grid, cnt = (self.ask, self.act) if buy else (self.bid, self.bct)
        while rem > 0:
            tick = self.ba if buy else self.bb
            if limit is not None and (tick > limit if buy else tick < limit):
                break
            level = int(grid[tick])
            q = min(rem, level)
            self.emit(i, "T", "B" if buy else "A", 0, tick, q)
            cnt[tick] = 0 if q == level else max(1, int(cnt[tick]) - (q * int(cnt[tick])) // level)
            grid[tick] = level - q
            rem -= q
            if q == level:
                self.new_best(not buy)
            self.refresh(not buy)
            self.emit(i, "C", "A" if buy else "B", 0, tick, q)
        return rem + left

    def pick(self, bid: bool, anchor: int, k: int, u: float) -> tuple[int, int, int]:
        """Choose a resting level with weight ``size * h(d)``; return (tick, rank, n_levels)."""
        if bid:
            lo = max(self.bb - 2 * k, 0)
            seg = self.bid[lo : self.bb + 1]
            nz = np.flatnonzero(seg)[::-1]
            ticks = nz + lo
            d = anchor - ticks
        else:
            seg = self.ask[self.ba : self.ba + 2 * k + 1]
            nz = np.flatnonzero(seg)
            ticks = nz + self.ba
            d = ticks - anchor
        w = seg[nz] * np.where(d < 0, H_STALE, np.where(d >= k, H_FAR, 1.0))
        c = np.cumsum(w)
        j = min(int(np.searchsorted(c, u * c[-1], side="right")), len(c) - 1)
        return int(ticks[j]), j, len(c)

    def cancel(self, i: int, bid: bool, anchor: int, k: int, u: float, size: int) -> bool:
        tick, r, n = self.pick(bid, anchor, k, u)
        grid, cnt = (self.bid, self.bct) if bid else (self.ask, self.act)
        level = int(grid[tick])
        if size >= level and n <= 2:
            return False  # never empty a side: the event becomes an add instead
        q = min(size, level)
        grid[tick] = level - q
        cnt[tick] = 0 if q == level else max(1, int(cnt[tick]) - 1)
        if q == level and tick == (self.bb if bid else self.ba):
            self.new_best(bid)
        if r < LEVELS:
            self.refresh(bid)
            self.emit(i, "C", "B" if bid else "A", r, tick, q)
        return True

    def modify(self, i: int, bid: bool, anchor: int, k: int, u: float, delta: int) -> None:
        tick, r, _ = self.pick(bid, anchor, k, u)
        grid = self.bid if bid else self.ask
        level = int(grid[tick])
        # an order at the level changes size: shrink when delta < 0 (never to zero), else grow
        change = delta if delta > 0 or level > -delta else -delta
        grid[tick] = level + change
        if r < LEVELS:
            self.refresh(bid)
            self.emit(i, "M", "B" if bid else "A", r, tick, abs(change))


def simulate(draws: EventDraws, params: BookParams, grid: int, window: int) -> EmittedRows:
    """Run the events through the book and return the visible rows.

    Per event ``i`` with fair value ``f`` (ticks) and target spread ``s``, the
    anchors are ``a_b = floor(f - (s - 1) / 2)`` and ``a_a = a_b + s``.

    - with probability ``trade_prob[i]`` a market order of ``mo_size[i]``
      shares, a buy with probability ``1 / (1 + exp(-(f - mid) / kappa))``;
    - else a book event on ``bid_side[i]``: a modify with probability
      ``modify_prob``; otherwise a cancel with probability ``Q / (Q + Q*_i)``
      (``Q`` the side's shares within ``K`` ticks of its best: cancels scale
      with the queue, adds do not, so depth reverts to ``~Q*_i`` at the event
      rate, i.e. gradually after a sweep, and follows ``Q*_i`` when it moves),
      else an add ``dist[i]`` ticks behind
      the anchor (marketable when at or through the opposite best); when the
      spread is wider than ``s`` the add instead improves the quote with
      probability ``improve_prob``, at the price inside the spread closest to
      its anchor.
    """
    book = _Book(grid, window)
    k = params.profile_ticks
    f0 = float(draws.fair[0])
    ab0 = int(np.floor(f0 - (draws.spread[0] - 1) / 2))
    aa0 = ab0 + int(draws.spread[0])
    prof = params.initial_levels
    book.bid[ab0 - np.arange(k)] = prof
    book.ask[aa0 + np.arange(k)] = prof
    book.bct[ab0 - np.arange(k)] = np.where(prof > 0, np.maximum(prof // 200, 1), 0)
    book.act[aa0 + np.arange(k)] = book.bct[ab0 - np.arange(k)]
    book.bb = ab0 - int(np.flatnonzero(prof)[0])
    book.ba = aa0 + int(np.flatnonzero(prof)[0])
    book.refresh(True)
    book.refresh(False)

    fair, spread = draws.fair.tolist(), draws.spread.tolist()
    kind_u, side_u, pick_u, cancel_u = (
        a.tolist() for a in (draws.kind_u, draws.side_u, draws.pick_u, draws.cancel_u)
    )
    bid_side, dist = draws.bid_side.tolist(), draws.dist.tolist()
    add_size, cancel_size = draws.add_size.tolist(), draws.cancel_size.tolist()
    mod_size, mo_size, trade_prob = (
        draws.mod_size.tolist(),
        draws.mo_size.tolist(),
        draws.trade_prob.tolist(),
    )
    q_star = draws.depth_target.tolist()
    kappa, p_mod, p_imp = params.side_scale_ticks, params.modify_prob, params.improve_prob

    for i in range(len(fair)):
        f = fair[i]
        ab = math.floor(f - (spread[i] - 1) / 2)
        aa = ab + spread[i]
        u = kind_u[i]
        if u < trade_prob[i]:
            mid = 0.5 * (book.bb + book.ba)
            buy = side_u[i] < 1.0 / (1.0 + math.exp(-(f - mid) / kappa))
            book.take(i, buy, mo_size[i], None)
            continue
        bid = bid_side[i]
        u = (u - trade_prob[i]) / (1.0 - trade_prob[i])  # uniform again, given "book event"
        if u < p_mod:
            book.modify(i, bid, ab if bid else aa, k, pick_u[i], mod_size[i])
            continue
        if bid:
            q = float(book.bid[max(book.bb - k, 0) : book.bb + 1].sum())
        else:
            q = float(book.ask[book.ba : book.ba + k + 1].sum())
        if cancel_u[i] < q / (q + q_star[i]) and book.cancel(
            i, bid, ab if bid else aa, k, pick_u[i], cancel_size[i]
        ):
            continue
        tick = ab - dist[i] if bid else aa + dist[i]
        if book.ba - book.bb > spread[i] and pick_u[i] < p_imp:
            # quote inside a spread wider than the target, as close to the anchor as allowed
            tick = (
                min(max(ab, book.bb + 1), book.ba - 1)
                if bid
                else max(min(aa, book.ba - 1), book.bb + 1)
            )
        size = add_size[i]
        if (bid and tick >= book.ba) or (not bid and tick <= book.bb):
            size = book.take(i, bid, size, tick)
            if size <= 0:
                continue
            tick = min(tick, book.ba - 1) if bid else max(tick, book.bb + 1)
        book.add(i, bid, tick, size)

    rows = book.rows
    return EmittedRows(
        event=np.array([r[0] for r in rows], np.int64),
        action=np.array([r[1] for r in rows], "<U1"),
        side=np.array([r[2] for r in rows], "<U1"),
        depth=np.array([r[3] for r in rows], np.int64),
        price=np.array([r[4] for r in rows], np.int64),
        size=np.array([r[5] for r in rows], np.int64),
        bid=np.stack(book.bsnaps) if rows else np.zeros((0, 3, LEVELS), np.int64),
        ask=np.stack(book.asnaps) if rows else np.zeros((0, 3, LEVELS), np.int64),
    )
