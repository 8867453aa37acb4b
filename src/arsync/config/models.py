"""The configuration's models: config/arsync.toml (`Settings`) and connectors/NAME.toml
(`ConnectorConfig`), with their value types. Validation only: nothing here reads a file but a
secret, and only when `ConnectorConfig.client_secret()` or `MailSettings.password_value()` is
called."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from datetime import timedelta
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from arsync.config.problems import NOTHING, Located, cross
from arsync.connectors.base import QBO_LIMITS, XERO_LIMITS, Endpoints, Limits
from arsync.errors import ConfigError
from arsync.store.urls import absolute_url, url_problem

SETTINGS_FILE = "config/arsync.toml"
CONNECTORS_DIR = "connectors"
DEFAULT_STORE_URL = "sqlite:///state/arsync.db"
DEFAULT_KEY_FILE = "secrets/arsync.key"

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Where systemd puts LoadCredential= files; they are 0400/0440 by design, not 0600.
_SYSTEMD_CREDENTIALS = Path("/run/credentials")

PLATFORM_CODES: dict[str, str] = {"quickbooks": "qbo", "xero": "xero"}
PLATFORM_NAMES: dict[str, str] = {"quickbooks": "QuickBooks Online", "xero": "Xero"}
PLATFORM_LIMITS: dict[str, Limits] = {"quickbooks": QBO_LIMITS, "xero": XERO_LIMITS}
#: scopes a platform cannot do without when the connector file lists its own
#: scopes a platform cannot do without when the connector file lists its own: each entry is a
#: set of alternatives, one of which must be listed, and why
REQUIRED_SCOPES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "quickbooks": [(("com.intuit.quickbooks.accounting",), "")],
    "xero": [
        (("offline_access",), " (without it Xero gives no refresh token)"),
        (
            ("accounting.settings.read", "accounting.settings"),
            " (to read the organisation's time zone and currency)",
        ),
    ],
}


# --- value types -----------------------------------------------------------------------------


def parse_duration(value: object) -> timedelta:
    """Seconds as an integer, or text such as "90s", "15m", "2h", "1d" (bare digits: seconds)."""
    if isinstance(value, timedelta):
        return value
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = int(m[1]) * _UNIT_SECONDS[m[2]]
    if seconds is None:
        raise PydanticCustomError(
            "duration", 'must be a number of seconds or a duration like "90s", "15m" or "2h"'
        )
    return timedelta(seconds=seconds)


def _duration(minimum: timedelta, said: str) -> PlainValidator:
    def check(value: object) -> timedelta:
        parsed = parse_duration(value)
        if parsed < minimum:
            raise PydanticCustomError(
                "duration_min", "must be at least {minimum}", {"minimum": said}
            )
        return parsed

    return PlainValidator(check)


def _pattern(regex: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise PydanticCustomError("pattern", message)
        return value

    return AfterValidator(check)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value.strip()


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise PydanticCustomError("url", "must be a plain URL, without ?query or #fragment")
    return value


def _zone(value: str) -> str:
    from arsync.escalation.zones import zone_problem

    problem = zone_problem(value)
    if problem is not None:
        raise PydanticCustomError("zone", problem)
    return value


def _store_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise PydanticCustomError("store_url", problem)
    return value


def _scopes(value: list[str]) -> list[str]:
    if not value:
        raise PydanticCustomError("scopes", "must list at least one scope (or leave it out)")
    for scope in value:
        if not scope or scope != scope.strip() or " " in scope:
            raise PydanticCustomError("scopes", "each scope must be one word without spaces")
    if len(set(value)) != len(value):
        raise PydanticCustomError("scopes", "lists a scope twice")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]
Slug = Annotated[str, _pattern(_SLUG, "must be lowercase letters, digits, hyphens and underscores")]
EnvName = Annotated[
    str,
    _pattern(_ENV_NAME, "must be an environment variable name (letters, digits, underscores)"),
]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Credential = Annotated[
    str, _pattern(re.compile(r"^(?!\.+$)[A-Za-z0-9_.-]+$"), "must be a credential name, not a path")
]
Positive = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    # strict: TOML has real types, so "4" where a number belongs is a mistake worth reporting
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- config/arsync.toml ----------------------------------------------------------------------


class StoreSettings(_Model):
    #: SQLAlchemy URL; a relative SQLite path is relative to the home directory
    url: Annotated[str, AfterValidator(_store_url)] = DEFAULT_STORE_URL


class SecretsSettings(_Model):
    #: the file of Fernet key(s) that encrypt tokens in the store, relative to home
    key_file: NonBlank = DEFAULT_KEY_FILE
    #: a systemd LoadCredential= name read from $CREDENTIALS_DIRECTORY; wins over key_file
    credential: Credential | None = None


class SyncSettings(_Model):
    workers: Annotated[int, Field(ge=1, le=32)] = 4


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class ClockSettings(_Model):
    #: for trying arsync on its sandbox only: take "now" from the sandbox served at this root
    #: (`arsync sandbox serve`), so moving the sandbox's clock moves arsync's
    sandbox: HttpUrl | None = None


def _email_address(value: str) -> str:
    value = value.strip()
    try:
        # an addr-spec alone: a display name belongs in from_name
        parsed = Address(addr_spec=value) if value.count("@") == 1 else None
    except (ValueError, IndexError, HeaderParseError):
        parsed = None
    if parsed is None or not parsed.username or "." not in parsed.domain.strip("."):
        raise PydanticCustomError(
            "email", 'must be an email address like "accounts@example.com"'
        ) from None
    if not value.isascii():
        raise PydanticCustomError("email", "must be plain ASCII (not every mail server takes more)")
    return value


def _mail_host(value: str) -> str:
    value = value.strip()
    if not value or "://" in value or "/" in value or any(c.isspace() for c in value):
        raise PydanticCustomError(
            "host", 'must be a host name or IP address, like "smtp.example.com"'
        )
    return value


def _password_env(value: object) -> str:
    # said without the value: a password pasted here by mistake must not be echoed back
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise cross(
            (
                (),
                "must be the name of an environment variable that holds the password "
                "(letters, digits, underscores)",
                NOTHING,
            )
        )
    return value


def _inline_password(value: object) -> str | None:
    raise cross(
        (
            (),
            "a password does not belong in config/arsync.toml: put it in an environment "
            "variable named by password_env, or in a private file (chmod 600) named by "
            "password_file",
            NOTHING,
        )
    )


def is_loopback(host: str) -> bool:
    """Is `host` this machine (localhost, 127.0.0.0/8, ::1)?"""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") in ("localhost", "localhost.localdomain")


EmailAddress = Annotated[str, AfterValidator(_email_address)]
MAIL_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class MailSettings(_Model):
    """[mail]: the firm's own mail server, through which letters go (SMTP)."""

    host: Annotated[str, AfterValidator(_mail_host)]
    #: None: 587 for starttls, 465 for tls, 25 for none
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    #: "starttls" (upgrade a plain connection), "tls" (TLS from the start) or "none" (only for
    #: a mail server on this machine)
    security: Literal["starttls", "tls", "none"] = "starttls"
    #: log in as this user (no username: no login)
    username: NonBlank | None = None
    password_env: Annotated[str, PlainValidator(_password_env)] | None = None
    password_file: NonBlank | None = None
    #: refused when given: passwords are named, never written here
    password: Annotated[str | None, PlainValidator(_inline_password)] = Field(
        default=None, exclude=True, repr=False
    )
    from_address: EmailAddress
    #: the name letters come from; None: the firm's name from the ledger
    from_name: NonBlank | None = None
    #: where replies go; None: the firm's own address from the ledger, else from_address
    reply_to: EmailAddress | None = None
    #: a copy of every letter to this address (not shown to the customer), for the paper trail
    bcc: EmailAddress | None = None
    #: certificates to trust for the mail server (PEM), besides the system's; relative to home
    ca_file: NonBlank | None = None
    timeout: Annotated[timedelta, _duration(timedelta(seconds=1), "1 second")] = timedelta(
        seconds=30
    )

    _home: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        problems = mail_cross(self)
        if problems:
            raise cross(*problems)
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else MAIL_PORTS[self.security]

    def at(self, home: Path) -> MailSettings:
        copy = self.model_copy()
        copy._home = Path(home)
        return copy

    def ca_path(self) -> Path | None:
        if self.ca_file is None:
            return None
        path = Path(self.ca_file)
        return path if path.is_absolute() else self._home / path

    def password_value(self) -> str | None:
        """The password, read now from the environment variable or file named (None: no
        login)."""
        env, file = self.password_env, self.password_file
        if env is not None:
            value = os.environ.get(env, "").strip()
            if not value:
                state = "is empty" if env in os.environ else "is not set"
                raise ConfigError(
                    f"{SETTINGS_FILE}: mail.password_env: the environment variable {env} {state}"
                )
            return value
        if file is not None:
            path = Path(file) if Path(file).is_absolute() else self._home / file
            return read_secret_file(path, f"{SETTINGS_FILE}: mail.password_file")
        return None


def mail_cross(mail: MailSettings) -> list[Located]:
    """Problems between the keys of [mail]."""
    found: list[Located] = []
    if mail.security == "none" and not is_loopback(mail.host):
        found.append(
            (
                ("security",),
                'may be "none" only for a mail server on this machine (localhost): letters '
                'and the password would cross the network unencrypted; use "starttls" or "tls"',
                mail.security,
            )
        )
    given = [k for k in ("password_env", "password_file") if getattr(mail, k) is not None]
    if len(given) == 2:
        found.append((("password",), "give password_env or password_file, not both", NOTHING))
    if given and mail.username is None:
        found.append((("username",), "is required with a password", NOTHING))
    if mail.username is not None and not given:
        found.append(
            (
                ("password",),
                "give password_env (an environment variable's name) or password_file (a "
                "file's path) for the username",
                NOTHING,
            )
        )
    return found


def _loopback(value: str) -> str:
    """host:port on this machine only (health and metrics are not for the network)."""
    import ipaddress

    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PydanticCustomError("listen", 'must be "host:port", e.g. "127.0.0.1:9187"')
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise PydanticCustomError(
                "listen", "must be a loopback address (127.0.0.1, ::1 or localhost)"
            )
    return value


def _local_time(value: str) -> str:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    if not m:
        raise PydanticCustomError("time", 'must be a time of day like "08:00"')
    return f"{int(m[1]):02d}:{m[2]}"


class DaemonSettings(_Model):
    """How `arsync run` runs: health and metrics, passes, shutdown, leases, housekeeping."""

    #: /healthz and /metrics on this loopback address; "" turns them off
    listen: Annotated[str, AfterValidator(_loopback)] = "127.0.0.1:9187"
    #: a full pass per connector (QuickBooks' change feed drops deletions past its cap)
    full_pass: Annotated[timedelta, _duration(timedelta(hours=1), "1 hour")] = timedelta(days=7)
    #: how long SIGTERM waits for work in flight before releasing it and exiting
    stop_within: Annotated[timedelta, _duration(timedelta(seconds=1), "1 second")] = timedelta(
        seconds=30
    )
    #: a connector's lease between replicas on PostgreSQL (taken over after one period)
    lease: Annotated[timedelta, _duration(timedelta(seconds=10), "10 seconds")] = timedelta(
        seconds=60
    )
    #: sync runs older than this are deleted (the paper trail's events are not runs)
    keep_runs: Annotated[timedelta, _duration(timedelta(days=1), "1 day")] = timedelta(days=90)
    #: events older than this are deleted; unset keeps the paper trail for ever
    keep_events: Annotated[timedelta, _duration(timedelta(days=365), "365 days")] | None = None
    #: store housekeeping (retention, checkpoint, ANALYZE) this often
    housekeeping: Annotated[timedelta, _duration(timedelta(hours=1), "1 hour")] = timedelta(days=1)


class DigestSettings(_Model):
    """A daily digest to the firm through [mail]: what was sent, who to call, what waits."""

    to: EmailAddress
    #: the firm's local time of day it is sent (each connector's firm time zone)
    at: Annotated[str, AfterValidator(_local_time)] = "08:00"


class Settings(_Model):
    """config/arsync.toml."""

    store: StoreSettings = Field(default_factory=StoreSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    #: the firm's mail server, for letters; None: no letters are sent
    mail: MailSettings | None = None
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    #: the firm's daily digest; None: none is sent
    digest: DigestSettings | None = None

    _home: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.digest is not None and self.mail is None:
            raise cross(
                (
                    ("digest",),
                    "needs [mail]: the digest goes through the firm's mail server",
                    NOTHING,
                )
            )
        return self

    @property
    def home(self) -> Path:
        return self._home

    def at(self, home: Path) -> Settings:
        """The same settings with relative paths taken against `home`."""
        copy = self.model_copy(update={"mail": self.mail.at(home)} if self.mail else None)
        copy._home = Path(home)
        return copy

    def store_url(self) -> str:
        """The store's URL, a relative SQLite path made absolute against home."""
        return absolute_url(self.store.url, self._home)

    def key_location(self) -> Path:
        """Where the Fernet key(s) are: the systemd credential if named, else key_file."""
        if self.secrets.credential:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    f"{SETTINGS_FILE}: secrets.credential: $CREDENTIALS_DIRECTORY is not set "
                    f"(systemd sets it for a unit with LoadCredential={self.secrets.credential}:…)"
                )
            return Path(directory) / self.secrets.credential
        path = Path(self.secrets.key_file)
        return path if path.is_absolute() else self._home / path


# --- connectors/NAME.toml --------------------------------------------------------------------


class OAuthSettings(_Model):
    client_id: NonBlank
    client_secret_env: EnvName | None = None
    client_secret_file: NonBlank | None = None
    #: None: a loopback port chosen at connect time
    redirect_uri: HttpUrl | None = None
    #: None: the platform's defaults
    scopes: Annotated[list[str], AfterValidator(_scopes)] | None = None


class ConnectorSync(_Model):
    interval: Annotated[timedelta, _duration(timedelta(seconds=60), "60 seconds")] = timedelta(
        minutes=15
    )
    sweep_interval: Annotated[timedelta, _duration(timedelta(minutes=15), "15 minutes")] = (
        timedelta(hours=6)
    )


class LimitOverrides(_Model):
    per_minute: Positive | None = None
    per_second: Positive | None = None
    concurrent: Positive | None = None
    per_day: Positive | None = None
    park_after: Annotated[timedelta, _duration(timedelta(0), "0 seconds")] | None = None
    idempotency_window: Annotated[timedelta, _duration(timedelta(0), "0 seconds")] | None = None


class EndpointOverrides(_Model):
    #: root of arsync's sandbox (`arsync sandbox serve`); None: the platform's production hosts
    sandbox: HttpUrl | None = None


_LIMIT_UNITS = {
    "per_minute": "calls a minute",
    "per_second": "calls a second",
    "concurrent": "calls at once",
    "per_day": "calls a day",
}


class ConnectorConfig(_Model):
    """connectors/NAME.toml; `name` is the file's stem, not a key in the file."""

    KEYS_NOT_IN_FILE: ClassVar[frozenset[str]] = frozenset({"name"})

    name: Annotated[str, _pattern(NAME_PATTERN, "must be lowercase letters, digits and hyphens")]
    platform: Literal["quickbooks", "xero"]
    display_name: NonBlank
    policy: Slug = "standard"
    #: the firm's time zone (IANA, e.g. "America/Chicago"): QuickBooks does not say it; for
    #: Xero it overrides the organisation's own
    timezone: Annotated[str, AfterValidator(_zone)] | None = None
    enabled: bool = True
    oauth: OAuthSettings
    sync: ConnectorSync = Field(default_factory=ConnectorSync)
    # Aliased so that `limits()` and `endpoints()` can be the resolved values.
    limit_overrides: LimitOverrides = Field(default_factory=LimitOverrides, alias="limits")
    endpoint_overrides: EndpointOverrides = Field(
        default_factory=EndpointOverrides, alias="endpoints"
    )

    _home: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorConfig:
        problems = connector_cross(self.model_dump(by_alias=True))
        if problems:
            raise cross(*problems)
        return self

    @property
    def source(self) -> str:
        """The file this connector comes from, relative to home."""
        return f"{CONNECTORS_DIR}/{self.name}.toml"

    @property
    def platform_code(self) -> str:
        return PLATFORM_CODES[self.platform]

    @property
    def sync_interval(self) -> timedelta:
        return self.sync.interval

    @property
    def sweep_interval(self) -> timedelta:
        return self.sync.sweep_interval

    @property
    def sandbox_url(self) -> str | None:
        return self.endpoint_overrides.sandbox

    def limits(self) -> Limits:
        """The platform's published limits with this file's overrides applied."""
        overrides = {
            key: value
            for key, value in self.limit_overrides.model_dump().items()
            if value is not None
        }
        return dataclasses.replace(PLATFORM_LIMITS[self.platform], **overrides)

    def endpoints(self) -> Endpoints:
        if self.endpoint_overrides.sandbox is not None:
            return Endpoints.sandbox(self.platform_code, self.endpoint_overrides.sandbox)
        return Endpoints.production(self.platform_code)

    def at(self, home: Path) -> ConnectorConfig:
        """The same connector with a relative client_secret_file taken against `home`."""
        copy = self.model_copy()
        copy._home = Path(home)
        return copy

    def client_secret(self) -> str:
        """The OAuth client secret, read now from the environment variable or file named."""
        env, file = self.oauth.client_secret_env, self.oauth.client_secret_file
        if env is not None:
            value = os.environ.get(env, "").strip()
            if not value:
                state = "is empty" if env in os.environ else "is not set"
                raise ConfigError(
                    f"{self.source}: oauth.client_secret_env: the environment variable {env} "
                    f"{state}"
                )
            return value
        assert file is not None  # the model requires exactly one of the two
        return self._read_secret_file(file)

    def _read_secret_file(self, file: str) -> str:
        path = Path(file) if Path(file).is_absolute() else self._home / file
        return read_secret_file(path, f"{self.source}: oauth.client_secret_file")


def read_secret_file(path: Path, where: str) -> str:
    """A secret from a private file; `where` ("file: key") begins every refusal."""
    try:
        # Non-blocking, so that a FIFO named by mistake cannot hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read {path}: {err.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{where}: {path} is not a regular file")
        if mode & 0o077 and not _is_credential(path):
            raise ConfigError(
                f"{where}: {path} is open to group or others (mode "
                f"{stat.S_IMODE(mode):04o}); make it private with chmod 600"
            )
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        raw = b"".join(chunks)
    except OSError as err:
        raise ConfigError(f"{where}: cannot read {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{where}: {path} is empty")
    return value


def connector_cross(data: Mapping[str, Any]) -> list[Located]:
    """Problems between the keys of a connector file, found in its raw (maybe invalid) data."""
    found: list[Located] = []
    raw_oauth = data.get("oauth")
    oauth: Mapping[str, Any] = raw_oauth if isinstance(raw_oauth, Mapping) else {}
    if isinstance(raw_oauth, Mapping):  # a missing [oauth] is reported as such
        given = [k for k in ("client_secret_env", "client_secret_file") if oauth.get(k) is not None]
        if len(given) == 2:
            found.append(
                (
                    ("oauth", "client_secret"),
                    "give client_secret_env or client_secret_file, not both",
                    NOTHING,
                )
            )
        elif not given:
            found.append(
                (
                    ("oauth", "client_secret"),
                    "give client_secret_env (an environment variable's name) or "
                    "client_secret_file (a file's path)",
                    NOTHING,
                )
            )
    platform = data.get("platform")
    if not isinstance(platform, str) or platform not in PLATFORM_LIMITS:
        return found
    endpoints, limits = data.get("endpoints"), data.get("limits")
    on_sandbox = isinstance(endpoints, Mapping) and endpoints.get("sandbox") is not None
    if isinstance(limits, Mapping) and not on_sandbox:
        published = PLATFORM_LIMITS[platform]
        for key, unit in _LIMIT_UNITS.items():
            value, ceiling = limits.get(key), getattr(published, key)
            is_number = isinstance(value, int) and not isinstance(value, bool)
            if is_number and ceiling is not None and value > ceiling:
                found.append(
                    (
                        ("limits", key),
                        f"{PLATFORM_NAMES[platform]} allows at most {ceiling} {unit}; "
                        "a higher limit is only for the sandbox ([endpoints] sandbox)",
                        value,
                    )
                )
    scopes = oauth.get("scopes")
    if isinstance(scopes, list) and scopes:
        for alternatives, why in REQUIRED_SCOPES[platform]:
            if not any(a in scopes for a in alternatives):
                named = " or ".join(f'"{a}"' for a in alternatives)
                found.append(
                    (
                        ("oauth", "scopes"),
                        f"must include {named} for {PLATFORM_NAMES[platform]}{why}",
                        scopes,
                    )
                )
    return found


def _is_credential(path: Path) -> bool:
    roots = [_SYSTEMD_CREDENTIALS]
    if directory := os.environ.get("CREDENTIALS_DIRECTORY"):
        roots.append(Path(directory))
    absolute = Path(os.path.abspath(path))
    return any(absolute.is_relative_to(root) for root in roots)
