"""replay.synthetic.day: the seeded MBP-10 day generator and the embedded sample in data/sample/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import zstandard

from replay.synthetic.__main__ import main
from replay.synthetic.csv_out import HEADER, format_cents, format_ts, render_csv
from replay.synthetic.day import (
    NS,
    PROFILES,
    SyntheticDay,
    generate_day,
    profile_for,
    session_bounds,
)

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "data" / "sample" / "sample.mbp10.csv.zst"
SEED = 20250403
DATE = "2025-04-03"
OPEN_UTC, CLOSE_UTC = session_bounds(DATE)
MIN = 60 * NS


@pytest.fixture(scope="module")
def day() -> SyntheticDay:
    return generate_day(SEED, ["SYNA", "SYNB"], DATE)


def _short(seed: int, symbols: list[str]) -> SyntheticDay:
    return generate_day(seed, symbols, DATE, open_hm="09:30", close_hm="09:50")


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
def test_sample_file_equals_generator_output_for_its_seed(day: SyntheticDay) -> None:
    text = zstandard.ZstdDecompressor().decompress(SAMPLE.read_bytes())
    assert text == render_csv(day), (
        "data/sample/sample.mbp10.csv.zst is stale: regenerate it with the command in "
        "data/sample/README.md"
    )


def test_sample_file_is_zstd_and_under_5_mb() -> None:
    blob = SAMPLE.read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert len(blob) < 5_000_000


@pytest.mark.slow
def test_reader_reads_sample_back_equal_to_generator_batch(day: SyntheticDay) -> None:
    from feeds.files.readers import read_book

    res = read_book(SAMPLE)
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
    p = profile_for("ZZZQ")
    assert p.instrument_id not in {q.instrument_id for q in PROFILES.values()}
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
@pytest.mark.parametrize("symbol", ["SYNA", "SYNB"])
def test_activity_is_u_shaped_first_and_last_30_min_busier_than_midday(
    day: SyntheticDay, symbol: str
) -> None:
    per_min = np.bincount(_minute(day.ts_event[_sym(day, symbol)]), minlength=390)
    midday = per_min[90:300].mean()  # 11:00-14:30 New York
    assert per_min[:30].mean() > 1.4 * midday
    assert per_min[360:390].mean() > 1.3 * midday


@pytest.mark.parametrize("symbol", ["SYNA", "SYNB"])
def test_volatility_is_u_shaped_first_and_last_30_min_above_midday(
    day: SyntheticDay, symbol: str
) -> None:
    m = _sym(day, symbol)
    ts, mid = day.ts_event[m], _mid_cents(day, m)
    at = np.searchsorted(ts, OPEN_UTC + np.arange(1, 2341) * 10 * NS, side="right") - 1
    ret = np.diff(mid[at])  # 10-second mid changes, cents
    midday = ret[90 * 6 : 300 * 6].std()  # 11:00-14:30 New York
    assert ret[: 30 * 6].std() > 1.15 * midday
    assert ret[360 * 6 - 1 :].std() > 1.15 * midday


def test_spreads_are_whole_ticks_at_least_one_and_widen_when_volatile(day: SyntheticDay) -> None:
    b = day.to_batch()
    cents = b.spread() * 100.0
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)
    assert (np.round(cents) >= 1).all()
    spread = {}
    for s in ("SYNA", "SYNB"):
        m = _sym(day, s)
        sp = (day.ask[m, 0, 0] - day.bid[m, 0, 0]).astype(np.float64)
        minute = _minute(day.ts_event[m])
        assert sp[minute < 30].mean() > 1.15 * sp[(minute >= 90) & (minute < 300)].mean()
        spread[s] = float(np.median(sp))
    assert spread["SYNA"] <= 2
    assert spread["SYNB"] >= 3 * spread["SYNA"]


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
    frac_5s, _ = still_wide(np.searchsorted(ts, ts[first] + 5 * NS))
    _, excess_30s = still_wide(np.searchsorted(ts, ts[first] + 30 * NS))
    assert nxt_frac > 0.5  # not refilled by the very next event
    assert frac_5s < 0.6 * nxt_frac  # ... but within seconds
    assert excess_30s < 0.25 * excess


def test_depth_taken_by_trades_is_replenished_over_tens_of_seconds(day: SyntheticDay) -> None:
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
    assert recovered(np.searchsorted(ts, ts[first] + 30 * NS)) > 0.5


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
        assert 40_000 <= m.sum() <= 80_000
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


def test_cli_main_writes_a_compressed_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.mbp10.csv.zst"
    rc = main(["--seed", "5", "--symbols", "SYNB", "--close", "09:45", "--out", str(out)])
    assert rc == 0
    text = zstandard.ZstdDecompressor().decompress(out.read_bytes())
    assert text == render_csv(generate_day(5, ["SYNB"], DATE, close_hm="09:45"))
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
