"""replay.synthetic: the seeded MBP-10 day generator and the embedded sample in data/sample/."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import zstandard

from feeds.book import BookBatch
from replay.synthetic.cli import SAMPLE_DATES, SAMPLE_SEED, SAMPLE_SYMBOLS, day_file, main
from replay.synthetic.csv_out import HEADER, format_cents, format_ts, render_csv
from replay.synthetic.day import (
    NS,
    SyntheticDay,
    generate_day,
    session_bounds,
)
from replay.synthetic.liquidity import minute_means
from replay.synthetic.params import PARAMS, params_for

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_DIR = ROOT / "data" / "sample"
SEED = SAMPLE_SEED
DATE = SAMPLE_DATES[-1]
OPEN_UTC, CLOSE_UTC = session_bounds(DATE)
MIN = 60 * NS


@pytest.fixture(scope="module")
def day() -> SyntheticDay:
    """The sample's last day (the one the README's replay runs on)."""
    return generate_day(SEED, list(SAMPLE_SYMBOLS), DATE)


def _short(seed: int, symbols: list[str], day: str = DATE) -> SyntheticDay:
    return generate_day(seed, symbols, day, open_hm="09:30", close_hm="09:50")


def _sym(day: SyntheticDay, symbol: str) -> npt.NDArray[np.bool_]:
    return day.symbol == symbol


def _minute(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (ts - OPEN_UTC) // MIN


def _mid_cents(day: SyntheticDay, m: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return 0.5 * (day.bid[m, 0, 0] + day.ask[m, 0, 0]).astype(np.float64)


def _size_at(snap: npt.NDArray[np.int64], price: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Shares resting at ``price`` (cents) in each (3, 10) snapshot; 0 when the level is gone."""
    return np.where(snap[:, 0, :] == price[:, None], snap[:, 1, :], 0).sum(axis=1)


# ----------------------------------------------------------------- the sample
@pytest.mark.slow
@pytest.mark.parametrize("when", SAMPLE_DATES)
def test_sample_file_equals_generator_output_for_its_seed(when: str) -> None:
    path = day_file(SAMPLE_DIR, when)
    text = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    assert text == render_csv(generate_day(SEED, list(SAMPLE_SYMBOLS), when)), (
        f"{path} is stale: regenerate the sample with the command in data/sample/README.md"
    )


def test_sample_holds_exactly_the_generated_days_zstd_and_under_8_mb() -> None:
    files = sorted(SAMPLE_DIR.glob("*.zst"))
    assert [f.name for f in files] == [day_file(SAMPLE_DIR, d).name for d in SAMPLE_DATES]
    assert all(f.read_bytes()[:4] == b"\x28\xb5\x2f\xfd" for f in files)
    assert sum(f.stat().st_size for f in files) < 8_000_000


def test_session_module_lists_the_sample_days_oldest_first() -> None:
    from replay.session import SAMPLE, SAMPLE_FILES
    from replay.session import SAMPLE_DATES as DATES

    assert [d.isoformat() for d in DATES] == list(SAMPLE_DATES)
    assert SAMPLE_FILES[-1] == SAMPLE == day_file(SAMPLE_DIR, SAMPLE_DATES[-1])


@pytest.mark.slow
def test_reader_reads_sample_back_equal_to_generator_batch(day: SyntheticDay) -> None:
    from feeds.files.readers import read_book

    res = read_book(day_file(SAMPLE_DIR, DATE))
    got, want = res.batch, day.to_batch()
    assert res.rejected == {}
    assert len(got) == len(want)
    np.testing.assert_array_equal(got.ts_event, want.ts_event)
    assert got.ts_recv is not None and want.ts_recv is not None
    np.testing.assert_array_equal(got.ts_recv, want.ts_recv)
    for f in ("symbol", "action", "side", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


# ------------------------------------------------------------- determinism
def test_generate_day_same_seed_gives_identical_rows() -> None:
    a, b = _short(7, ["SYNA", "SYNB"]), _short(7, ["SYNA", "SYNB"])
    assert render_csv(a) == render_csv(b)


def test_generate_day_different_seed_gives_different_rows() -> None:
    a, b = _short(7, ["SYNB"]), _short(8, ["SYNB"])
    assert len(a) != len(b) or not np.array_equal(a.price, b.price)


def test_symbol_day_does_not_depend_on_other_symbols_requested() -> None:
    alone, both = _short(11, ["SYNB"]), _short(11, ["SYNA", "SYNB"])
    m = _sym(both, "SYNB")
    for f in ("ts_event", "ts_recv", "action", "side", "depth", "price", "size", "bid", "ask"):
        np.testing.assert_array_equal(getattr(alone, f), getattr(both, f)[m], err_msg=f)


def test_unknown_symbol_gets_derived_profile_and_a_valid_book() -> None:
    p = params_for("ZZZQ")
    assert p.instrument_id not in {q.instrument_id for q in PARAMS.values()}
    d = _short(3, ["ZZZQ"])
    assert len(d) > 1000
    assert d.to_batch().validate().counts() == {}


# ------------------------------------------------------------ book validity
def test_generated_batch_validates_with_zero_rejections(day: SyntheticDay) -> None:
    assert day.to_batch().validate().counts() == {}


def test_book_never_locks_or_crosses_and_keeps_ten_levels(day: SyntheticDay) -> None:
    assert (day.ask[:, 0, 0] > day.bid[:, 0, 0]).all()
    assert (day.bid[:, 0, :] >= 0).all() and (day.ask[:, 0, :] >= 0).all()


def test_timestamps_in_session_ordered_and_recv_after_event(day: SyntheticDay) -> None:
    assert day.ts_event.min() >= OPEN_UTC and day.ts_event.max() < CLOSE_UTC
    assert (np.diff(day.ts_recv) >= 0).all()
    assert (day.ts_recv >= day.ts_event).all()
    for s in ("SYNA", "SYNB"):
        ts = day.ts_event[_sym(day, s)]
        assert (np.diff(ts) >= 0).all()
        assert ts[0] < OPEN_UTC + MIN and ts[-1] >= CLOSE_UTC - MIN
    assert (np.diff(day.sequence) == 1).all()


# ---------------------------------------------------------------- realism
# Intraday shapes vary from day to day (replay.synthetic.intraday), so the U shapes are
# checked on the five sample days pooled, as a profile would see them.
@pytest.fixture(scope="module")
def week() -> dict[str, list[tuple[int, BookBatch]]]:
    """Per symbol: (session open ns, book) of every sample day."""
    from replay.session import SAMPLE_FILES, read_days, wall_clock_ns

    data = read_days(SAMPLE_FILES)
    return {s: [(wall_clock_ns(d, "09:30", t.tz), b) for d, b in zip(t.dates, t.books, strict=True)]
            for s, t in data.by_symbol.items()}


def _per_minute(week: dict[str, list[tuple[int, BookBatch]]], symbol: str,
                f: Callable[[int, BookBatch], npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """``f(open, book)`` (390 minute values) averaged over the sample days."""
    return np.asarray(np.nanmean([f(o, b) for o, b in week[symbol]], axis=0))


def _u_shape(x: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(first 30 min, last 30 min) means relative to 11:00-14:30 New York."""
    midday = float(np.nanmean(x[90:300]))
    return float(np.nanmean(x[:30])) / midday, float(np.nanmean(x[360:])) / midday


@pytest.mark.parametrize("symbol", ["SYNA", "SYNB"])
def test_activity_is_u_shaped_first_and_last_30_min_busier_than_midday(
    week: dict[str, list[tuple[int, BookBatch]]], symbol: str
) -> None:
    rows = _per_minute(week, symbol, lambda o, b: np.bincount(
        (b.ts_event - o) // MIN, minlength=390)[:390].astype(np.float64))
    open_, close = _u_shape(rows)
    assert open_ > 1.4 and close > 1.3


@pytest.mark.parametrize("symbol", ["SYNA", "SYNB"])
def test_volatility_is_u_shaped_first_and_last_30_min_above_midday(
    week: dict[str, list[tuple[int, BookBatch]]], symbol: str
) -> None:
    def sq_returns(o: int, b: BookBatch) -> npt.NDArray[np.float64]:
        at = np.searchsorted(b.ts_event, o + np.arange(0, 2341) * 10 * NS, side="right") - 1
        r = np.diff(b.mid()[np.maximum(at, 0)]) * 100.0  # 10-second mid changes, cents
        return np.asarray((r[:2340] ** 2).reshape(390, 6).mean(axis=1))

    open_, close = _u_shape(_per_minute(week, symbol, sq_returns))
    assert math.sqrt(open_) > 1.15 and math.sqrt(close) > 1.15


def test_spreads_are_whole_ticks_and_wider_at_the_open(
    day: SyntheticDay, week: dict[str, list[tuple[int, BookBatch]]]
) -> None:
    cents = day.to_batch().spread() * 100.0
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)
    assert (np.round(cents) >= 1).all()
    median = {}
    for s in ("SYNA", "SYNB"):
        spread = _per_minute(week, s, lambda o, b: minute_means(b, o)[0])  # time-weighted, ticks
        assert _u_shape(spread)[0] > 1.15
        median[s] = float(np.median(spread))
    assert median["SYNA"] <= 2
    assert median["SYNB"] >= 3 * median["SYNA"]


def test_prices_are_on_the_cent_grid(day: SyntheticDay) -> None:
    b = day.to_batch()
    for px in (b.price, b.bid_px.ravel(), b.ask_px.ravel()):
        px = px[np.isfinite(px)]
        np.testing.assert_array_equal(np.round(px * 100.0) / 100.0, px)


def test_trades_walk_the_book_and_deplete_the_level_by_the_traded_size(day: SyntheticDay) -> None:
    for s in ("SYNA", "SYNB"):
        idx = np.flatnonzero(_sym(day, s))
        t = idx[:-1][day.action[idx[:-1]] == "T"]
        nxt = idx[np.searchsorted(idx, t) + 1]
        buy = day.side[t] == "B"
        assert set(np.unique(day.side[t])) <= {"A", "B"}
        # the aggressor hits the opposite best
        best = np.where(buy, day.ask[t, 0, 0], day.bid[t, 0, 0])
        np.testing.assert_array_equal(day.price[t], best)
        # Databento pairing: T (book before) then C on the resting side, same time/price/size
        np.testing.assert_array_equal(day.action[nxt], "C")
        np.testing.assert_array_equal(day.side[nxt], np.where(buy, "A", "B"))
        np.testing.assert_array_equal(day.price[nxt], day.price[t])
        np.testing.assert_array_equal(day.size[nxt], day.size[t])
        np.testing.assert_array_equal(day.ts_event[nxt], day.ts_event[t])
        before = np.where(
            buy, _size_at(day.ask[t], day.price[t]), _size_at(day.bid[t], day.price[t])
        )
        after = np.where(
            buy, _size_at(day.ask[nxt], day.price[t]), _size_at(day.bid[nxt], day.price[t])
        )
        np.testing.assert_array_equal(before - after, day.size[t])
        # the untouched side does not move between the two rows
        np.testing.assert_array_equal(
            np.where(buy[:, None], day.bid[t, 1], day.ask[t, 1]),
            np.where(buy[:, None], day.bid[nxt, 1], day.ask[nxt, 1]),
        )


def test_depth_grows_away_from_the_touch(day: SyntheticDay) -> None:
    for s in ("SYNA", "SYNB"):
        m = _sym(day, s)
        med = np.median(np.concatenate([day.bid[m, 1], day.ask[m, 1]]), axis=0)
        assert med[0] < med[3:].mean()


def _aggressive_orders(
    day: SyntheticDay, symbol: str
) -> tuple[
    npt.NDArray[np.bool_], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.bool_]
]:
    """Per aggressive order: (rows of the symbol, first T row, last row of its T/C run, is buy)."""
    m = _sym(day, symbol)
    ts, act = day.ts_event[m], day.action[m]
    prev_same = np.concatenate([[False], (ts[1:] == ts[:-1]) & np.isin(act[:-1], ["T", "C"])])
    first = np.flatnonzero((act == "T") & ~prev_same)
    first = first[ts[first] < CLOSE_UTC - 2 * MIN]
    end = np.searchsorted(ts, ts[first], side="right") - 1
    return m, first, end, day.side[m][first] == "B"


@pytest.mark.parametrize("symbol", ["SYNA", "SYNB"])
def test_spread_opened_by_a_trade_recovers_gradually_not_instantly(
    day: SyntheticDay, symbol: str
) -> None:
    m, first, end, _ = _aggressive_orders(day, symbol)
    ts = day.ts_event[m]
    spread = day.ask[m, 0, 0] - day.bid[m, 0, 0]
    wide = spread[end] > spread[first]
    assert wide.sum() > 500
    excess = (spread[end] - spread[first])[wide].mean()

    def still_wide(at: npt.NDArray[np.int64]) -> tuple[float, float]:
        gap = (spread[at] - spread[first])[wide]
        return float((gap > 0).mean()), float(gap.mean())

    nxt_frac, _ = still_wide(end + 1)
    frac_15s, _ = still_wide(np.searchsorted(ts, ts[first] + 15 * NS))
    _, excess_30s = still_wide(np.searchsorted(ts, ts[first] + 30 * NS))
    assert nxt_frac > 0.5  # not refilled by the very next event
    assert frac_15s < 0.75 * nxt_frac  # ... but within seconds to tens of seconds
    assert excess_30s < 0.25 * excess
    # (FROG, measured the same way, is slower still: 73 % still wide after 15 s)


def test_depth_taken_by_trades_is_replenished_within_a_minute(day: SyntheticDay) -> None:
    m, first, end, buy = _aggressive_orders(day, "SYNB")
    ts = day.ts_event[m]
    ask, bid = day.ask[m], day.bid[m]
    # a fixed price band: the 10 ticks from the swept side's best before the order
    lo = np.where(buy, ask[first, 0, 0], bid[first, 0, 0] - 9)
    hi = lo + 9

    def band(at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        snap = np.where(buy[:, None, None], ask[at], bid[at])
        inside = (snap[:, 0, :] >= lo[:, None]) & (snap[:, 0, :] <= hi[:, None])
        return np.where(inside, snap[:, 1, :], 0).sum(axis=1)

    pre, post = band(first), band(end)
    big = (pre - post) >= 0.2 * pre
    assert big.sum() > 100
    gap = (pre - post)[big]

    def recovered(at: npt.NDArray[np.int64]) -> float:
        return float(np.median((band(at) - post)[big] / gap))

    assert recovered(end + 1) < 0.1
    assert recovered(np.searchsorted(ts, ts[first] + 60 * NS)) > 0.3
    # (FROG refills slower still: a median 9 % of the gap after 60 s)


def test_sizes_are_mostly_round_lots_with_a_heavy_tail(day: SyntheticDay) -> None:
    for s in ("SYNA", "SYNB"):
        m = _sym(day, s)
        adds = day.size[m & (day.action == "A")]
        assert (adds % 100 == 0).mean() > 0.6
        trades = day.size[m & (day.action == "T")]
        assert trades.max() >= 10 * np.median(trades)
        assert np.percentile(trades, 99) >= 4 * np.median(trades)


def test_event_counts_and_volume_support_a_meaningful_parent_order(day: SyntheticDay) -> None:
    for s in ("SYNA", "SYNB"):
        m = _sym(day, s)
        assert 15_000 <= m.sum() <= 40_000  # small files: five days of two symbols near 6 MB
        t = m & (day.action == "T")
        vol = day.size[t].sum()
        hourly = np.bincount(_minute(day.ts_event[t]) // 60, weights=day.size[t], minlength=7)
        # 2 % of the day's volume over any full hour is under a third of that hour's volume
        assert (0.02 * vol < hourly[:6] / 3).all()
    assert day.size[_sym(day, "SYNA") & (day.action == "T")].sum() > 1_000_000


# -------------------------------------------------------------------- CSV
def test_format_helpers_give_databento_text() -> None:
    ts = np.array([OPEN_UTC + 125_395_235], np.int64)
    assert format_ts(ts).tolist() == ["2025-04-03 13:30:00.125395235+00:00"]
    assert format_cents(np.array([5010, 7, -1, 3000], np.int64)).tolist() == [
        "50.10",
        "0.07",
        "",
        "30.00",
    ]


def test_render_csv_header_and_rows_follow_databento_layout() -> None:
    snap_b = np.zeros((1, 3, 10), np.int64)
    snap_b[0, 0] = -1
    snap_b[0, :, 0] = (4999, 300, 2)
    snap_a = snap_b.copy()
    snap_a[0, :, 0] = (5001, 100, 1)
    one = np.array([0], np.int64)
    d = SyntheticDay(
        ts_event=one + OPEN_UTC, ts_recv=one + OPEN_UTC + 20_000, ts_in_delta=one + 170_000,
        symbol=np.array(["SYNA"]), instrument_id=one + 900001, action=np.array(["A"]),
        side=np.array(["B"]), depth=one, price=one + 4999, size=one + 100, flags=one + 128,
        sequence=one + 5, bid=snap_b, ask=snap_a,
    )  # fmt: skip
    lines = render_csv(d).decode().splitlines()
    assert lines[0].split(",") == list(HEADER)
    assert lines[0].startswith("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,")
    assert lines[0].endswith("bid_px_09,ask_px_09,bid_sz_09,ask_sz_09,bid_ct_09,ask_ct_09,symbol")
    row = dict(zip(HEADER, lines[1].split(","), strict=True))
    assert row["ts_recv"] == "2025-04-03 13:30:00.000020000+00:00"
    assert row["ts_event"] == "2025-04-03 13:30:00.000000000+00:00"
    assert (row["rtype"], row["action"], row["side"], row["price"], row["size"]) == (
        "10", "A", "B", "49.99", "100",
    )  # fmt: skip
    assert (row["bid_px_00"], row["ask_px_00"], row["bid_sz_00"], row["ask_ct_00"]) == (
        "49.99", "50.01", "300", "1",
    )  # fmt: skip
    assert (row["bid_px_01"], row["bid_sz_01"], row["ask_ct_09"]) == ("", "0", "0")
    assert row["symbol"] == "SYNA"


def test_cli_main_writes_one_compressed_csv_per_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["--seed", "5", "--symbols", "SYNB", "--dates", "2025-04-02,2025-04-03",
               "--close", "09:45", "--out-dir", str(tmp_path), "--prefix", "x"])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "x-2025-04-02.mbp10.csv.zst", "x-2025-04-03.mbp10.csv.zst"]
    for when in ("2025-04-02", "2025-04-03"):
        text = zstandard.ZstdDecompressor().decompress(day_file(tmp_path, when, "x").read_bytes())
        assert text == render_csv(generate_day(5, ["SYNB"], when, close_hm="09:45"))
    assert "SYNB" in capsys.readouterr().out


def test_render_csv_bytes_do_not_depend_on_chunk_rows() -> None:
    d = _short(13, ["SYNB"])
    assert render_csv(d, chunk_rows=7) == render_csv(d)


def test_session_bounds_follow_new_york_daylight_saving() -> None:
    summer, winter = session_bounds("2025-04-03"), session_bounds("2025-01-15")
    assert format_ts(np.array(summer, np.int64)).tolist() == [
        "2025-04-03 13:30:00.000000000+00:00",
        "2025-04-03 20:00:00.000000000+00:00",
    ]
    assert format_ts(np.array(winter, np.int64)).tolist() == [
        "2025-01-15 14:30:00.000000000+00:00",
        "2025-01-15 21:00:00.000000000+00:00",
    ]
