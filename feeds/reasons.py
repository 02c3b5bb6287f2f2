"""Every rejection reason, in one place.

A reason is a short stable string: the DLQ ``error`` header, the ``reason``
label of ``mpc_agent_snapshots_rejected_total`` / ``mpc_agent_messages_rejected_total``
and the key of the rejection counts readers return. Renaming one breaks
dashboards and alerts; add new ones here, never spell one out elsewhere.

=========================  ===============================================================
group                      who gives it
=========================  ===============================================================
:data:`BOOK_REASONS`       the one book validator (``feeds.book.check_books``), for files
                           and wire alike, in priority order (the first that applies wins)
:data:`SCHEMA_REASONS`     the wire codec: the shape of a message (bytes, JSON, tag, fields,
                           types)
:data:`VALUE_REASONS`      the wire codec: values breaking an invariant (the book reasons
                           among them)
:data:`INTAKE_REASONS`     the live intake and the engine thread: checks that need a clock
                           or the agent's state
=========================  ===============================================================
"""

from __future__ import annotations

# ------------------------------------------------------------------ book (files and wire)
NON_FINITE = "non_finite"
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_SIZE = "negative_size"
LEVELS_OUT_OF_ORDER = "levels_out_of_order"
CROSSED_BOOK = "crossed_book"
LOCKED_BOOK = "locked_book"
TS_BACKWARDS = "ts_backwards"
BOOK_REASONS: tuple[str, ...] = (
    NON_FINITE, NON_POSITIVE_PRICE, NEGATIVE_SIZE, LEVELS_OUT_OF_ORDER, CROSSED_BOOK, LOCKED_BOOK,
    TS_BACKWARDS,
)
"""What ``BookBatch.validate`` can say, in the order its rules apply (``non_positive_price``
also comes back for a trade without a price, a rule checked after ``locked_book``)."""

# ------------------------------------------------------------------ wire: shape
NULL_VALUE = "null_value"
OVERSIZE = "oversize"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_SCHEMA = "unknown_schema"
UNEXPECTED_SCHEMA = "unexpected_schema"
MISSING_FIELD = "missing_field"
UNEXPECTED_FIELD = "unexpected_field"
INVALID_TYPE = "invalid_type"
SCHEMA_REASONS: tuple[str, ...] = (
    NULL_VALUE, OVERSIZE, INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, UNKNOWN_SCHEMA, UNEXPECTED_SCHEMA,
    MISSING_FIELD, UNEXPECTED_FIELD, INVALID_TYPE,
)

# ------------------------------------------------------------------ wire: values
LEVELS_MISMATCH = "levels_mismatch"
TOO_MANY_LEVELS = "too_many_levels"
INVALID_VALUE = "invalid_value"
INVALID_TIMESTAMP = "invalid_timestamp"
NON_POSITIVE_QUANTITY = "non_positive_quantity"
INVALID_PARTICIPATION = "invalid_participation"
END_BEFORE_START = "end_before_start"
INVALID_CHILD_ORDER_ID = "invalid_child_order_id"
VALUE_REASONS: tuple[str, ...] = (
    NON_FINITE, NON_POSITIVE_PRICE, NEGATIVE_SIZE, CROSSED_BOOK, LOCKED_BOOK,
    LEVELS_OUT_OF_ORDER, LEVELS_MISMATCH, TOO_MANY_LEVELS, INVALID_VALUE, INVALID_TIMESTAMP,
    NON_POSITIVE_QUANTITY, INVALID_PARTICIPATION, END_BEFORE_START, INVALID_CHILD_ORDER_ID,
)
WIRE_REASONS: tuple[str, ...] = SCHEMA_REASONS + VALUE_REASONS
"""Every reason ``feeds.wire.codec.decode`` can raise with."""

# ------------------------------------------------------------------ live intake
TS_FUTURE = "ts_future"
PARENT_EXPIRED = "parent_expired"
TOO_MANY_PERIODS = "too_many_periods"
UNKNOWN_PARENT = "unknown_parent"
PARENT_DONE = "parent_done"
DUPLICATE_PARENT = "duplicate_parent"
INTAKE_REASONS: tuple[str, ...] = (
    TS_FUTURE, PARENT_EXPIRED, TOO_MANY_PERIODS, UNKNOWN_PARENT, PARENT_DONE, DUPLICATE_PARENT,
)

REASONS: tuple[str, ...] = tuple(dict.fromkeys(BOOK_REASONS + WIRE_REASONS + INTAKE_REASONS))
"""Every reason, once."""
