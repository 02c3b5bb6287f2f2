"""Market impact from the book: level walks, cost curves, fits, online estimation.

One cost model, two uses (DESIGN.md section 9): the planner's ``g_t`` is
fitted from :func:`walk_levels` cost curves, and the replay simulator fills
child orders with the very same :func:`walk_levels`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def walk_levels(
    px: FloatArray,
    sz: FloatArray,
    quantity: float | FloatArray,
    limit: float | FloatArray | None = None,
    *,
    buy: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Walk one side of the book, best level first, for ``quantity`` shares.

    Parameters
    ----------
    px, sz : (n, L) arrays of the side being consumed (asks for a buy, bids
        for a sell), best first; empty levels are NaN price / 0 size.
    quantity : shares wanted, scalar or (n,).
    limit : worst acceptable price (scalar or (n,)); levels beyond it are not
        touched. None means no limit.
    buy : True when consuming asks (limit is a maximum), False for bids
        (limit is a minimum).

    Returns
    -------
    filled : (n,) shares filled, ``min(quantity, depth within limit)``.
    notional : (n,) ``sum_i p_i q_i`` over the consumed levels, dollars.
    """
    px = np.asarray(px, dtype=np.float64)
    sz = np.asarray(sz, dtype=np.float64)
    usable = (sz > 0) & np.isfinite(px)
    if limit is not None:
        lim = np.asarray(limit, dtype=np.float64)
        lim = lim[:, None] if lim.ndim == 1 else lim
        with np.errstate(invalid="ignore"):
            usable &= (px <= lim) if buy else (px >= lim)
    avail = np.where(usable, sz, 0.0)
    before = np.cumsum(avail, axis=1) - avail
    q = np.asarray(quantity, dtype=np.float64)
    q = q[:, None] if q.ndim == 1 else q
    take = np.clip(q - before, 0.0, avail)
    filled = take.sum(axis=1)
    notional = (take * np.where(usable, px, 0.0)).sum(axis=1)
    return filled, notional
