"""Fail fast on bad Kafka credentials instead of retrying forever.

aiokafka treats a failed SASL handshake like an unreachable broker: it logs
the ``SaslAuthenticationFailed`` and raises ``KafkaConnectionError("Unable to
bootstrap")``, which a live service rightly retries. A wrong password never
heals, so :func:`check_credentials` opens one connection to each bootstrap
server before the service starts and turns an authentication (or TLS
certificate) failure into :class:`agent.core.errors.ConfigError`, naming the user
and mechanism but never the password. An unreachable broker is not an error
here: the service's reconnect-with-backoff handles it.
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed

from agent.core.errors import ConfigError
from feeds.kafka import KafkaConnection


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


async def check_credentials(conn: KafkaConnection, *, timeout_s: float = 10.0) -> bool:
    """Authenticate once against the first reachable bootstrap server.

    Returns True when a server accepted the credentials, False when none could
    be reached (PLAINTEXT connections are not checked: True).

    Raises
    ------
    ConfigError : the broker refused the SASL credentials or the TLS certificate.
    """
    if conn.security_protocol == "PLAINTEXT":
        return True
    kw = conn.client_kwargs()
    for host, port in _hosts(conn.bootstrap_servers):
        try:
            c = await asyncio.wait_for(create_conn(
                host, port, client_id=kw.get("client_id", "mpc-agent"), ssl_context=kw.get("ssl_context"),
                security_protocol=conn.security_protocol, sasl_mechanism=kw.get("sasl_mechanism"),
                sasl_plain_username=kw.get("sasl_plain_username"),
                sasl_plain_password=kw.get("sasl_plain_password"),
                request_timeout_ms=int(timeout_s * 1000)), timeout_s)
        except SaslAuthenticationFailed:
            raise ConfigError(
                f"Kafka authentication failed at {host}:{port} for user {conn.sasl_username!r} "
                f"({conn.security_protocol}/{conn.sasl_mechanism}): check kafka.sasl_username and "
                "kafka.sasl_password (env MPC_AGENT_KAFKA__SASL_PASSWORD)") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(f"TLS certificate of {host}:{port} refused: {exc.verify_message}; check "
                              "kafka.ssl_cafile and kafka.ssl_check_hostname") from None
        except (TimeoutError, OSError, KafkaError):
            continue
        c.close()
        return True
    return False
