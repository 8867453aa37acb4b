"""Letters through the firm's own mail server: the message composed, then sent over SMTP.

`compose()` makes the message from a rendered `Letter` and its facts: plain text and HTML
alternatives, the date it is given (never the machine's clock), and a Message-ID (and MIME
boundary) derived from the action's id, so that a letter sent twice is recognisably the same
letter, byte for byte. `Mailer.send()`
hands it to the server (STARTTLS or TLS, a login when a username is set) and says how it ended
in arsync's terms:

- the server could not be reached, or answered 4xx: TransientError (try again later);
- the server refused (5xx), or its certificate is not trusted: PermanentError (a person must
  look: a bad address, a bad login, a bad certificate);
- the letter was handed over in full and the reply to it was lost: OutcomeUnknown, since the
  server may have accepted it: a resend could send the letter twice.

SMTP's protocol is driven step by step rather than through `sendmail()`, because only the
steps tell a refusal before the letter was sent from a silence after it.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import structlog

from arsync.config.models import SETTINGS_FILE, MailSettings, is_loopback
from arsync.errors import (
    ArsyncError,
    ConfigError,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from arsync.writeback.words import Letter, LetterFacts

log = structlog.get_logger("arsync.mail")

#: the part of a Message-ID after the "@" when the from-address gives no domain
FALLBACK_DOMAIN = "arsync.invalid"


def message_id(action_id: str, from_address: str) -> str:
    """ "<arsync.ACTION@DOMAIN>": the same for every try of one action, so that a letter
    resent after a lost reply is recognisably the same letter (mail clients fold duplicates)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", action_id):
        raise ValueError(f"an action id must be letters, digits, dots, hyphens: {action_id!r}")
    domain = from_address.rpartition("@")[2] or FALLBACK_DOMAIN
    return f"<arsync.{action_id}@{domain}>"


def compose(
    letter: Letter,
    facts: LetterFacts,
    action_id: str,
    settings: MailSettings,
    *,
    now: datetime,
) -> EmailMessage:
    """The letter as an email: From the firm (through its mail server), To the customer."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("a letter's date needs a time zone (the firm's)")
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(settings.from_name or facts.firm, addr_spec=settings.from_address)
    message["To"] = Address(facts.customer, addr_spec=facts.customer_email)
    reply_to = settings.reply_to or facts.firm_email
    if reply_to and reply_to != settings.from_address:
        message["Reply-To"] = Address(facts.firm, addr_spec=reply_to)
    message["Subject"] = letter.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(action_id, settings.from_address)
    # RFC 3834: sent by a program, so an out-of-office robot should not answer it
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(letter.text)
    message.add_alternative(letter.html, subtype="html")
    # not random, as the email package would make it: the same letter is the same bytes
    message.set_boundary(f"=_arsync_{action_id}")
    return message


def recipients(message: EmailMessage) -> list[str]:
    """The addresses the letter is to (its To header)."""
    header = message["To"]
    return [str(a.addr_spec) for a in header.addresses] if header is not None else []


class Mailer:
    """One mail server, as [mail] in config/arsync.toml describes it."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        """Hand `message` to the server, or raise what went wrong (see the module's doc)."""
        to = recipients(message)
        if not to:
            raise PermanentError("the letter has no recipient")
        payload = _payload(message)
        where = f"mail server {self.settings.host}:{self.settings.effective_port}"
        try:
            server = self._connect()
        except ArsyncError:
            raise
        except ssl.SSLCertVerificationError as err:
            raise PermanentError(
                f"{where}: its certificate is not trusted ({err.verify_message}); "
                "set [mail] ca_file to trust a private one"
            ) from err
        except smtplib.SMTPAuthenticationError as err:
            raise _refusal(where, f"the login of {self.settings.username}", err) from err
        except smtplib.SMTPResponseException as err:
            raise _refusal(where, "connecting", err) from err
        except (smtplib.SMTPException, OSError) as err:
            raise TransientError(f"{where}: cannot connect: {_said(err)}") from err
        try:
            self._deliver(server, where, to, payload)
        finally:
            _close(server)

    # -- inside ---------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca = self.settings.ca_path()
        if ca is not None:
            try:
                context.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(
                    f"{SETTINGS_FILE}: mail.ca_file: cannot read certificates from {ca}: "
                    f"{getattr(err, 'strerror', None) or err}"
                ) from None
        return context

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        timeout = settings.timeout.total_seconds()
        port = settings.effective_port
        server: smtplib.SMTP
        if settings.security == "tls":
            server = smtplib.SMTP_SSL(settings.host, port, timeout=timeout, context=self._context())
        else:
            server = smtplib.SMTP(settings.host, port, timeout=timeout)
        where = f"mail server {settings.host}:{port}"
        try:
            server.ehlo()
            if settings.security == "starttls":
                if not server.has_extn("starttls"):
                    raise PermanentError(f'{where}: does not offer STARTTLS (security = "tls"?)')
                server.starttls(context=self._context())
                server.ehlo()
            if settings.username is not None:
                # in the clear only to this machine: [mail] refuses "none" for any other host
                assert settings.security != "none" or is_loopback(settings.host)
                if not server.has_extn("auth"):
                    raise PermanentError(f"{where}: offers no login (AUTH) for the username")
                password = settings.password_value()
                assert password is not None  # a username comes with a password (validated)
                server.login(settings.username, password)
        except BaseException:
            _close(server)
            raise
        return server

    def _deliver(self, server: smtplib.SMTP, where: str, to: list[str], payload: bytes) -> None:
        sender = self.settings.from_address
        try:
            code, reply = server.mail(sender)
            if code != 250:
                raise _refusal(where, f"the sender {sender}", _reply(code, reply))
            for address in to:
                code, reply = server.rcpt(address)
                if code not in (250, 251):
                    raise _refusal(where, f"the recipient {address}", _reply(code, reply))
            copy = self.settings.bcc
            if copy is not None and copy not in to:
                code, reply = server.rcpt(copy)
                if code not in (250, 251):
                    # the customer's letter matters more than the firm's own copy of it
                    log.warning("mail_copy_refused", to=copy, code=code)
            server.putcmd("data")
            code, reply = server.getreply()
            if code != 354:
                raise _refusal(where, "the letter", _reply(code, reply))
            server.send(payload)
        except ArsyncError:
            raise
        except (smtplib.SMTPException, OSError) as err:
            # nothing was sent past the end of the letter: it was not delivered
            raise TransientError(
                f"{where}: connection lost before the letter was sent: {_said(err)}"
            ) from err
        try:
            code, reply = server.getreply()
        except (smtplib.SMTPException, OSError) as err:
            raise OutcomeUnknown(
                f"{where}: the letter was sent but no reply came ({_said(err)}); it may have "
                "been accepted: check the firm's sent copy before sending it again"
            ) from err
        if code != 250:
            raise _refusal(where, "the letter", _reply(code, reply))


def _payload(message: EmailMessage) -> bytes:
    """The message as DATA carries it: CRLF lines, a leading dot doubled, the final dot."""
    data = message.as_bytes(policy=SMTP)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reply(code: int, reply: bytes) -> smtplib.SMTPResponseException:
    return smtplib.SMTPResponseException(code, reply)


def _refusal(where: str, what: str, err: smtplib.SMTPResponseException) -> ArsyncError:
    text = (
        err.smtp_error.decode("utf-8", "replace")
        if isinstance(err.smtp_error, bytes)
        else str(err.smtp_error)
    )
    said = f"{where}: refused {what}: {err.smtp_code} {' '.join(text.split())}"
    if 400 <= err.smtp_code < 500:
        return TransientError(said)
    return PermanentError(said, status=err.smtp_code)


def _said(err: BaseException) -> str:
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    text = str(err).strip() or type(err).__name__
    return " ".join(text.split())


def _close(server: smtplib.SMTP) -> None:
    # the outcome is already known: a failure to say goodbye changes nothing
    try:
        server.quit()
    except (smtplib.SMTPException, OSError):
        server.close()
