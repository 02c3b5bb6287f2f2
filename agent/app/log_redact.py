"""Keep secrets out of logs: a ``logging.Filter`` that masks given strings in every record.

Third-party debug logging can print credentials verbatim (aiokafka's
``aiokafka.conn`` logs the SASL PLAIN ``SaslAuthenticateRequest`` bytes, i.e.
``user\\0user\\0password``, at DEBUG). :func:`install_redaction` attaches a
:class:`RedactSecrets` filter to every handler of the root logger, so records
of *all* loggers are masked where they are written, whatever their level.
Each secret is masked in its plain form and in its ``bytes`` repr form.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "**********"


class RedactSecrets(logging.Filter):
    """Replace every occurrence of the secrets in a record's message (and traceback text) by ``MASK``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms.add(s)
                forms.add(repr(s.encode())[2:-1])  # as printed inside b'...'
        self.forms = sorted(forms, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for f in self.forms:
            text = text.replace(f, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.forms:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler
            return True
        masked = self._mask(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True


def install_redaction(secrets: Iterable[str], logger: logging.Logger | None = None) -> RedactSecrets:
    """Attach one :class:`RedactSecrets` to every handler of ``logger`` (root by default); returns it."""
    target = logger or logging.getLogger()
    flt = RedactSecrets(secrets)
    for h in target.handlers:
        h.addFilter(flt)
    return flt
