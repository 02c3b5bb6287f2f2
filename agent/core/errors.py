"""Exception tree of the project.

::

    MpcAgentError                    base of everything we raise on purpose
    ├── ConfigError                  bad settings or CLI arguments (fix the config)
    ├── DataError                    a record or file we cannot use (skip the record)
    │   ├── SchemaError              unknown/invalid message schema or file layout
    │   ├── FormatDetectionError     no reader recognises the file (pass --format)
    │   └── ValidationError          a value breaks an invariant (NaN, crossed book, ...)
    ├── SolverError                  the QP could not be solved (fall back to a plan)
    ├── RiskRejected                 a pre-trade check refused a child order
    └── FeedError                    a source or sink failed
        └── RetriableFeedError       transient (broker down, timeout): back off and retry

Data errors skip a record, solver errors fall back, retriable feed errors back
off. Every message says how to fix the problem.
"""

from __future__ import annotations


class MpcAgentError(Exception):
    """Base class of every exception the project raises on purpose."""


class ConfigError(MpcAgentError):
    """Invalid configuration or command-line arguments."""


class DataError(MpcAgentError):
    """A record or a file that cannot be used; the record is skipped."""


class SchemaError(DataError):
    """Unknown or invalid schema (message or file layout)."""


class FormatDetectionError(DataError):
    """No reader recognises the file; pass ``--format`` explicitly."""


class ValidationError(DataError):
    """A value violates an invariant (NaN/inf, crossed book, negative size...)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class SolverError(MpcAgentError):
    """The QP could not be solved; callers fall back to a simpler plan."""


class RiskRejected(MpcAgentError):
    """A pre-trade risk check refused a child order."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class FeedError(MpcAgentError):
    """A source or sink failed."""


class RetriableFeedError(FeedError):
    """A transient feed failure (broker unavailable, timeout): back off and retry."""
