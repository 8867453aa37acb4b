"""The sandbox's own mail server: an SMTP sink on loopback that keeps every message it receives.

Letters go through the firm's mail server, and the sandbox stands in for it as it stands in for
QuickBooks and Xero: `with MailSink() as sink:` listens on a free loopback port (plain SMTP, no
login: it never leaves this machine) and `sink.received()` gives every message accepted so far,
parsed, with the envelope it came in. Nothing is relayed anywhere.
"""

from __future__ import annotations

import email
import errno
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from arsync.sandbox.server import free_port

#: tries at a free port: another process may take the one just found before the sink binds it
PORT_TRIES = 5


@dataclass(frozen=True)
class Received:
    """One message as the sink accepted it: the envelope's sender and recipients, and the
    message itself."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


class _Keeper:
    """aiosmtpd's handler: accept every message and keep it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: list[Received] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        data = content if isinstance(content, bytes) else str(content or "").encode()
        message = email.message_from_bytes(data, policy=default)
        assert isinstance(message, EmailMessage)  # what the default policy makes
        kept = Received(
            str(envelope.mail_from or ""),
            tuple(str(r) for r in envelope.rcpt_tos),
            message,
        )
        with self.lock:
            self.kept.append(kept)
        return "250 2.0.0 accepted by the sandbox's mail server"


class MailSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives; start and stop it with `with`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self._wanted = port
        self._keeper = _Keeper()
        self._controller: Controller | None = None
        self.port = 0

    def start(self) -> MailSink:
        for attempt in range(PORT_TRIES):
            port = self._wanted if self._wanted is not None else free_port(self.host)
            # a name of its own for the greeting: without one, aiosmtpd asks the resolver for
            # this machine's, which can take seconds
            controller = Controller(
                self._keeper, hostname=self.host, port=port, server_hostname="sandbox.localhost"
            )
            try:
                controller.start()
            except OSError as err:
                # a free port taken meanwhile: try another (a port asked for is not retried)
                if self._wanted is not None or err.errno != errno.EADDRINUSE:
                    raise
                if attempt == PORT_TRIES - 1:
                    raise
                continue
            self._controller, self.port = controller, port
            break
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def received(self) -> list[Received]:
        """Every message accepted so far, in the order it arrived."""
        with self._keeper.lock:
            return list(self._keeper.kept)


__all__ = ["MailSink", "Received"]
