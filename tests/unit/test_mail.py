"""The [mail] settings of config/arsync.toml and the letter's email, without a server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from arsync.config import InvalidConfig, load
from arsync.config.models import MailSettings, Settings
from arsync.errors import ConfigError
from arsync.escalation.policy import Tone
from arsync.writeback.mail import compose, message_id
from arsync.writeback.words import Letter, LetterFacts, OverdueInvoice

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-never-shown"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    root = tmp_path / "home"
    (root / "config").mkdir(parents=True)
    return root


def settings_file(home: Path, mail: str) -> None:
    (home / "config" / "arsync.toml").write_text("[mail]\n" + mail, encoding="utf-8")


def problems(home: Path) -> list[str]:
    with pytest.raises(InvalidConfig) as caught:
        load(home)
    return [str(p) for p in caught.value.problems]


def uncommented_mail(text: str) -> str:
    """config/arsync.toml with its [mail] example switched on (one of the two passwords)."""
    out, inside = [], False
    for line in text.splitlines():
        if line == "# [mail]":
            inside = True
        if inside and re.match(r"# (\[|[a-z_]+ = )", line) and "password_file" not in line:
            line = line[2:]
        out.append(line)
    return "\n".join(out) + "\n"


# -- the settings ---------------------------------------------------------------------------------


def test_no_mail_table_means_no_letters_and_the_shipped_example_is_valid(home: Path) -> None:
    shipped = (ROOT / "config" / "arsync.toml").read_text(encoding="utf-8")
    assert "\n[mail]" not in shipped and "# [mail]" in shipped
    assert Settings().mail is None
    (home / "config" / "arsync.toml").write_text(uncommented_mail(shipped), encoding="utf-8")
    mail = load(home).settings.mail
    assert mail is not None
    assert (mail.host, mail.effective_port, mail.security) == ("smtp.example.com", 587, "starttls")
    assert (mail.username, mail.password_env) == ("letters@example.com", "ARSYNC_SMTP_PASSWORD")
    assert mail.bcc == "letters-sent@example.com"
    assert mail.ca_path() == home / "secrets" / "mail-ca.pem"
    assert mail.timeout == timedelta(seconds=30)


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_each_security_has_its_port(home: Path, security: str, port: int) -> None:
    settings_file(
        home,
        f'host = "localhost"\nsecurity = "{security}"\nfrom_address = "letters@firm.example"\n',
    )
    mail = load(home).settings.mail
    assert mail is not None and mail.effective_port == port


def test_mail_problems_come_with_file_and_key_and_never_echo_a_password(home: Path) -> None:
    settings_file(
        home,
        'host = "smtp.example.com"\nsecurity = "none"\nusername = "letters"\n'
        f'password_env = "{PASSWORD}"\nfrom_address = "letters"\nreply_to = "a b@c.example"\n',
    )
    found = problems(home)
    assert found == [
        "config/arsync.toml: mail.password_env: must be the name of an environment variable "
        "that holds the password (letters, digits, underscores)",
        'config/arsync.toml: mail.from_address: must be an email address like "accounts@'
        'example.com", got "letters"',
        'config/arsync.toml: mail.reply_to: must be an email address like "accounts@'
        'example.com", got "a b@c.example"',
    ]
    settings_file(
        home,
        f'host = "smtp.example.com"\npassword = "{PASSWORD}"\nfrom_address = "a@firm.example"\n',
    )
    assert problems(home) == [
        "config/arsync.toml: mail.password: a password does not belong in config/arsync.toml: "
        "put it in an environment variable named by password_env, or in a private file "
        "(chmod 600) named by password_file"
    ]


@pytest.mark.parametrize(
    ("mail", "expected"),
    [
        (
            'host = "smtp.example.com"\nsecurity = "none"\n',
            [
                'mail.security: may be "none" only for a mail server on this machine '
                "(localhost): letters and the password would cross the network unencrypted; "
                'use "starttls" or "tls", got "none"'
            ],
        ),
        (
            'host = "smtp.example.com"\nusername = "u"\n',
            [
                "mail.password: give password_env (an environment variable's name) or "
                "password_file (a file's path) for the username"
            ],
        ),
        (
            'host = "smtp.example.com"\npassword_env = "P"\npassword_file = "p"\n',
            [
                "mail.password: give password_env or password_file, not both",
                "mail.username: is required with a password",
            ],
        ),
        (
            'host = "smtps://smtp.example.com"\nport = 70000\nsecurity = "ssl"\n',
            [
                'mail.host: must be a host name or IP address, like "smtp.example.com", got '
                '"smtps://smtp.example.com"',
                "mail.port: must be at most 65535, got 70000",
                'mail.security: must be "starttls", "tls" or "none", got "ssl"',
            ],
        ),
        (
            'host = "smtp.example.com"\ntimeout = "0s"\n',
            ['mail.timeout: must be at least 1 second, got "0s"'],
        ),
        (
            'host = "smtp.example.com"\nhots = "x"\n',
            ['mail.hots: unknown key (did you mean "host"?)'],
        ),
    ],
)
def test_mail_keys_checked_together(home: Path, mail: str, expected: list[str]) -> None:
    settings_file(home, mail + 'from_address = "letters@firm.example"\n')
    assert problems(home) == [f"config/arsync.toml: {line}" for line in expected]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"])
def test_security_none_is_for_this_machine_only(home: Path, host: str) -> None:
    settings_file(home, f'host = "{host}"\nsecurity = "none"\nfrom_address = "a@firm.example"\n')
    assert load(home).settings.mail is not None


def test_the_password_is_read_when_asked_for(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(
        home,
        'host = "smtp.example.com"\nusername = "u"\npassword_env = "ARSYNC_TEST_MAIL_PW"\n'
        'from_address = "a@firm.example"\n',
    )
    mail = load(home).settings.mail
    assert mail is not None
    monkeypatch.delenv("ARSYNC_TEST_MAIL_PW", raising=False)
    with pytest.raises(ConfigError, match=r"mail\.password_env: the environment variable "):
        mail.password_value()
    monkeypatch.setenv("ARSYNC_TEST_MAIL_PW", f" {PASSWORD}\n")
    assert mail.password_value() == PASSWORD
    assert PASSWORD not in repr(mail)
    # a file, relative to home, private
    settings_file(
        home,
        'host = "smtp.example.com"\nusername = "u"\npassword_file = "secrets/pw"\n'
        'from_address = "a@firm.example"\n',
    )
    secret = home / "secrets" / "pw"
    secret.parent.mkdir()
    secret.write_text(PASSWORD)
    secret.chmod(0o644)
    mail = load(home).settings.mail
    assert mail is not None
    with pytest.raises(ConfigError, match=r"mail\.password_file: .* make it private"):
        mail.password_value()
    secret.chmod(0o600)
    assert mail.password_value() == PASSWORD


# -- the email ------------------------------------------------------------------------------------

MAIL = MailSettings.model_validate(
    {"host": "smtp.example.com", "from_address": "letters@harbor.example"}
)
LETTER = Letter(subject="Overdue", text="Dear Acme,\n", html="<p>Dear Acme,</p>\n")
FACTS = LetterFacts(
    today=datetime(2026, 8, 24).date(),
    tone=Tone.POLITE,
    firm="Harbor Plumbing",
    firm_email=None,
    firm_phone=None,
    customer="Acme Ltd",
    customer_email="ap@acme.example",
    invoices=(
        OverdueInvoice(
            number="1",
            issued=datetime(2026, 6, 1).date(),
            due=datetime(2026, 7, 1).date(),
            total="1.00 USD",
            balance="1.00 USD",
            days_overdue=54,
        ),
    ),
    owed="1.00 USD",
    interest=None,
    compensation=None,
    claimed=None,
    law=None,
    reference="ref",
)


def test_compose_is_a_function_of_its_inputs() -> None:
    when = datetime(2026, 8, 24, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    first = compose(LETTER, FACTS, "abc234", MAIL, now=when)
    again = compose(LETTER, FACTS, "abc234", MAIL, now=when)
    assert first.as_bytes() == again.as_bytes()
    assert first["Date"] == "Mon, 24 Aug 2026 09:30:00 -0500"
    assert first["Message-ID"] == "<arsync.abc234@harbor.example>"
    assert first["From"] == "Harbor Plumbing <letters@harbor.example>"
    assert "Reply-To" not in first  # nothing to reply to but the sender
    assert [p.get_content_type() for p in first.iter_parts()] == ["text/plain", "text/html"]
    other = compose(LETTER, FACTS, "xyz567", MAIL, now=when)
    assert other["Message-ID"] == "<arsync.xyz567@harbor.example>"


def test_compose_refuses_a_date_without_a_zone_and_an_odd_action_id() -> None:
    with pytest.raises(ValueError, match="time zone"):
        compose(LETTER, FACTS, "abc", MAIL, now=datetime(2026, 8, 24, 9, 30))
    with pytest.raises(ValueError, match="action id"):
        message_id("a>b", "x@y.example")
    assert message_id("abc", "x@y.example") == "<arsync.abc@y.example>"
    assert compose(LETTER, FACTS, "abc", MAIL, now=datetime(2026, 1, 1, tzinfo=UTC))["Date"] == (
        "Thu, 01 Jan 2026 00:00:00 +0000"
    )
