"""Letters through a real SMTP server started by the test: what it receives, and its refusals."""

from __future__ import annotations

import asyncio
import email
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from email.message import EmailMessage, Message
from email.policy import default
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as Server
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arsync.config.models import MailSettings
from arsync.domain import Invoice, InvoiceStatus
from arsync.errors import ConfigError, OutcomeUnknown, PermanentError, TransientError
from arsync.escalation.policy import LatePayment, Tone
from arsync.writeback.mail import Mailer, compose
from arsync.writeback.words import BUILTIN_DIR, Letter, LetterFacts, Words

ACTION = "k7q2m4xa3bcdefgh2ijklmnopq"
WHEN = datetime(2026, 8, 24, 9, 30, tzinfo=timezone(timedelta(hours=1)))
USER, PASSWORD = "arsync", "correct horse battery staple"
PASSWORD_ENV = "ARSYNC_TEST_SMTP_PASSWORD"


@dataclass
class Inbox:
    """An SMTP handler that keeps what it receives, or answers as the test tells it to."""

    envelopes: list[Envelope] = field(default_factory=list)
    refuse_rcpt: str | None = None  # e.g. "550 5.1.1 no such mailbox"
    refuse_data: str | None = None  # the reply to the letter itself
    hang_up_after_data: bool = False

    async def handle_RCPT(
        self, server: Server, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Server, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        if self.hang_up_after_data:
            # the letter has arrived; its reply never will
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(0)
        return self.refuse_data or "250 2.0.0 queued"

    def message(self, n: int = 0) -> Message:
        content = self.envelopes[n].content
        assert isinstance(content, bytes)
        return email.message_from_bytes(content, policy=default)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A private CA's certificate (for the Mailer to trust) and the server's TLS context."""
    folder = tmp_path_factory.mktemp("tls")
    start = datetime(2000, 1, 1, tzinfo=UTC)  # valid whatever today is
    end = datetime(2999, 1, 1, tzinfo=UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arsync test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return ca_file, context


def authenticate(
    server: Server, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class Running:
    inbox: Inbox
    port: int


def serve(inbox: Inbox, **options: Any) -> Iterator[Running]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield Running(inbox, port)
    finally:
        controller.stop()


@pytest.fixture
def plain() -> Iterator[Running]:
    yield from serve(Inbox())


@pytest.fixture
def starttls(tls: tuple[Path, ssl.SSLContext]) -> Iterator[Running]:
    yield from serve(
        Inbox(),
        tls_context=tls[1],
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )


@pytest.fixture
def implicit_tls(tls: tuple[Path, ssl.SSLContext]) -> Iterator[Running]:
    # (aiosmtpd sees TLS only through STARTTLS: on a TLS port it must be told AUTH is safe)
    yield from serve(
        Inbox(), ssl_context=tls[1], authenticator=authenticate, auth_require_tls=False
    )


def settings(port: int, **more: Any) -> MailSettings:
    return MailSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "letters@harbor.example",
            "from_name": "Harbor & Finch Ltd",
            "timeout": "2s",
            **more,
        }
    )


UK = LatePayment.model_validate(
    {"regime": "uk", "base_rates": [{"from": date(2026, 1, 1), "rate": 4.0}]}
)


def letter_facts() -> LetterFacts:
    return LetterFacts.build(
        today=WHEN.date(),
        tone=Tone.FIRM,
        firm="Harbor & Finch Ltd",
        firm_email="accounts@harbor.example",
        firm_phone="020 7946 0000",
        customer="Acme Trading Ltd",
        customer_email="ap@acme.example",
        invoices=[
            Invoice(
                id="42",
                number="1042",
                customer_id="c1",
                issue_date=date(2026, 6, 10),
                due_date=date(2026, 7, 10),
                currency="GBP",
                total=Decimal("999.99"),
                balance=Decimal("999.99"),
                status=InvoiceStatus.OPEN,
                sent=True,
                updated_at=datetime(2026, 6, 10, tzinfo=UTC),
            )
        ],
        late_payment=UK,
        reference="k7q2m4xa",
    )


def letter(mail: MailSettings) -> EmailMessage:
    facts = letter_facts()
    return compose(Words.load([BUILTIN_DIR]).letter(facts), facts, ACTION, mail, now=WHEN)


SENTENCE = (
    "Statutory interest at 12.00% a year (Bank of England base rate 4.00% on 30 Jun 2026 + 8%) "
    "for 45 days: 14.79 GBP; fixed compensation 40.00 GBP (Late Payment of Commercial Debts "
    "(Interest) Act 1998)"
)


def read(received: Message) -> tuple[str, str]:
    assert received.is_multipart()
    parts = {part.get_content_type(): part for part in received.walk()}
    text, html = parts["text/plain"], parts["text/html"]
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return tuple(str(p.get_content()).replace("\r\n", "\n") for p in (text, html))  # type: ignore[return-value]


def raw(inbox: Inbox, n: int = 0) -> bytes:
    content = inbox.envelopes[n].content
    assert isinstance(content, bytes)
    return content


# -- delivered -------------------------------------------------------------------------------------


def test_a_letter_reaches_the_server_as_composed(plain: Running) -> None:
    mail = settings(plain.port, bcc="copies@harbor.example")
    Mailer(mail).send(letter(mail))
    [envelope] = plain.inbox.envelopes
    assert envelope.mail_from == "letters@harbor.example"
    assert envelope.rcpt_tos == ["ap@acme.example", "copies@harbor.example"]
    received = plain.inbox.message()
    assert received["Message-ID"] == f"<arsync.{ACTION}@harbor.example>"
    assert parseaddr(str(received["From"])) == ("Harbor & Finch Ltd", "letters@harbor.example")
    assert parseaddr(str(received["To"])) == ("Acme Trading Ltd", "ap@acme.example")
    assert parseaddr(str(received["Reply-To"])) == ("Harbor & Finch Ltd", "accounts@harbor.example")
    assert received["Subject"] == "Overdue account: 999.99 GBP unpaid"
    assert received["Date"] == "Mon, 24 Aug 2026 09:30:00 +0100"
    assert received["Auto-Submitted"] == "auto-generated"
    assert "Bcc" not in received  # the firm's copy is in the envelope only
    text, html = read(received)
    assert "Dear Acme Trading Ltd," in text
    assert SENTENCE in text
    assert "Harbor &amp; Finch Ltd" in html
    assert SENTENCE.replace("&", "&amp;") in html


def test_the_same_action_makes_the_same_message_id(plain: Running) -> None:
    mail = settings(plain.port)
    Mailer(mail).send(letter(mail))
    Mailer(mail).send(letter(mail))
    first, second = plain.inbox.message(0), plain.inbox.message(1)
    assert first["Message-ID"] == second["Message-ID"] == f"<arsync.{ACTION}@harbor.example>"
    assert first.as_bytes() == second.as_bytes()


def test_a_line_starting_with_a_dot_arrives_whole(plain: Running) -> None:
    mail = settings(plain.port)
    facts = letter_facts()
    words = Words.load([BUILTIN_DIR]).letter(facts)
    dotted = Letter(words.subject, ".\n..leading dots\n" + words.text, words.html)
    Mailer(mail).send(compose(dotted, facts, ACTION, mail, now=WHEN))
    text, _ = read(plain.inbox.message())
    assert text.startswith(".\n..leading dots\n")


def test_starttls_with_a_login_to_a_server_with_a_private_certificate(
    starttls: Running, tls: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    mail = settings(
        starttls.port,
        security="starttls",
        username=USER,
        password_env=PASSWORD_ENV,
        ca_file=str(tls[0]),
    )
    Mailer(mail).send(letter(mail))
    received = starttls.inbox.message()
    assert received["Message-ID"] == f"<arsync.{ACTION}@harbor.example>"
    assert SENTENCE in read(received)[0]
    # a wrong password is the server's refusal: a person must look
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(PermanentError, match=r"refused the login of arsync: 535"):
        Mailer(mail).send(letter(mail))
    # a certificate arsync was not told to trust is refused before any password is sent
    untrusted = settings(
        starttls.port, security="starttls", username=USER, password_env=PASSWORD_ENV
    )
    with pytest.raises(PermanentError, match="certificate is not trusted"):
        Mailer(untrusted).send(letter(untrusted))
    assert len(starttls.inbox.envelopes) == 1


def test_tls_from_the_start_with_a_password_file(
    implicit_tls: Running, tls: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    mail = settings(
        implicit_tls.port,
        security="tls",
        username=USER,
        password_file="smtp-password",
        ca_file=str(tls[0]),
    ).at(tmp_path)
    Mailer(mail).send(letter(mail))
    assert implicit_tls.inbox.envelopes[0].rcpt_tos == ["ap@acme.example"]


def test_a_ca_file_that_cannot_be_read_is_a_configuration_error(
    implicit_tls: Running, tmp_path: Path
) -> None:
    mail = settings(implicit_tls.port, security="tls", ca_file="missing.pem").at(tmp_path)
    with pytest.raises(ConfigError, match=r"config/arsync.toml: mail.ca_file: cannot read"):
        Mailer(mail).send(letter(mail))


# -- refused, unreachable, unknown ----------------------------------------------------------------


def test_a_refused_recipient_is_permanent_and_a_4xx_is_transient(plain: Running) -> None:
    mail = settings(plain.port)
    plain.inbox.refuse_rcpt = "550 5.1.1 no such mailbox here"
    with pytest.raises(PermanentError) as caught:
        Mailer(mail).send(letter(mail))
    assert caught.value.status == 550
    assert str(caught.value) == (
        f"mail server 127.0.0.1:{plain.port}: refused the recipient ap@acme.example: 550 5.1.1 "
        "no such mailbox here"
    )
    plain.inbox.refuse_rcpt = "451 4.3.0 try again later"
    with pytest.raises(TransientError, match=r"451 4\.3\.0 try again later"):
        Mailer(mail).send(letter(mail))
    plain.inbox.refuse_rcpt = None
    plain.inbox.refuse_data = "554 5.7.1 message refused"
    with pytest.raises(PermanentError, match="refused the letter: 554"):
        Mailer(mail).send(letter(mail))


def test_nothing_listening_is_transient() -> None:
    mail = settings(free_port())
    with pytest.raises(TransientError, match="cannot connect"):
        Mailer(mail).send(letter(mail))


def test_a_reply_lost_after_the_letter_was_sent_is_an_unknown_outcome(plain: Running) -> None:
    plain.inbox.hang_up_after_data = True
    mail = settings(plain.port)
    with pytest.raises(OutcomeUnknown, match="the letter was sent but no reply came"):
        Mailer(mail).send(letter(mail))
    # and indeed the server has it: resending would send it twice
    assert len(plain.inbox.envelopes) == 1
