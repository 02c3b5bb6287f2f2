"""agent.app.log_redact: configured secrets never reach a log handler's output, whatever the logger."""

from __future__ import annotations

import io
import logging

from agent.app.log_redact import MASK, RedactSecrets, install_redaction


def _logger_with_stream() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    root = logging.Logger("test-root")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root.addHandler(handler)
    return root, stream


def test_redaction_masks_plain_args_bytes_repr_and_tracebacks() -> None:
    root, stream = _logger_with_stream()
    install_redaction(["s3cr'et", ""], root)
    child = logging.Logger("aiokafka.conn")
    child.parent = root
    child.propagate = True
    child.setLevel(logging.DEBUG)
    child.debug("Request: SaslAuthenticateRequest(sasl_auth_bytes=%r)", b"mpc\x00mpc\x00s3cr'et")
    child.warning("password is %s", "s3cr'et")
    try:
        raise ValueError("bad credentials s3cr'et")
    except ValueError:
        child.exception("failed")
    out = stream.getvalue()
    assert "s3cr" not in out
    assert out.count(MASK) == 4 and "mpc\\x00mpc\\x00" in out  # request, warning, traceback line + message


def test_redaction_without_secrets_leaves_records_alone() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    assert RedactSecrets([]).filter(rec) and rec.getMessage() == "hello world"
