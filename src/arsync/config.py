"""Configuration: config/arsync.toml and connectors/*.toml, validated with every problem at once.

An arsync home holds `config/arsync.toml` (daemon settings; missing means the built-in defaults)
and `connectors/NAME.toml`, one file per company link, whose stem is the connector's name.
`load(home)` reads them all and either returns a `Config` or raises one `InvalidConfig` whose
message has a line per problem, each naming the file (relative to home), the dotted key and what
is wrong with the value given. Loading only reads: it writes nothing and resolves no secret;
`ConnectorConfig.client_secret()` reads the referenced secret when it is called.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from arsync.connectors.base import QBO_LIMITS, XERO_LIMITS, Endpoints, Limits
from arsync.errors import ConfigError

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
REQUIRED_SCOPES: dict[str, str] = {
    "quickbooks": "com.intuit.quickbooks.accounting",
    "xero": "offline_access",
}

_CROSS = "arsync_cross"


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


def _store_url(value: str) -> str:
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise PydanticCustomError(
            "store_url",
            'must be a database URL like "sqlite:///state/arsync.db" or '
            '"postgresql+psycopg://user@host/db"',
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise PydanticCustomError("store_url", "must be a SQLite or PostgreSQL URL")
    if url.get_backend_name() == "postgresql" and not url.database:
        raise PydanticCustomError("store_url", "must name the database (…/dbname)")
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


#: a problem found by code rather than by a field's type: its key, what is wrong, the value given
Located = tuple[tuple[str, ...], str, object]


def _cross(*problems: Located) -> PydanticCustomError:
    """Problems between keys, each with its own key (relative to the model) and value."""
    summary = "; ".join(f"{'.'.join(loc)}: {message}" for loc, message, _ in problems)
    return PydanticCustomError(_CROSS, "{summary}", {"summary": summary, "problems": problems})


_NOTHING = object()


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


class Settings(_Model):
    """config/arsync.toml."""

    store: StoreSettings = Field(default_factory=StoreSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    _home: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def home(self) -> Path:
        return self._home

    def at(self, home: Path) -> Settings:
        """The same settings with relative paths taken against `home`."""
        copy = self.model_copy()
        copy._home = Path(home)
        return copy

    def store_url(self) -> str:
        """The store's URL, a relative SQLite path made absolute against home."""
        url = make_url(self.store.url)
        database = url.database
        if (
            url.get_backend_name() != "sqlite"
            or not database
            or database == ":memory:"
            or database.startswith("file:")
            or Path(database).is_absolute()
        ):
            return self.store.url
        absolute = url.set(database=str(self._home / database))
        return absolute.render_as_string(hide_password=False)

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

    name: Annotated[str, _pattern(NAME_PATTERN, "must be lowercase letters, digits and hyphens")]
    platform: Literal["quickbooks", "xero"]
    display_name: NonBlank
    policy: Slug = "standard"
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
        problems = _connector_cross(self.model_dump(by_alias=True))
        if problems:
            raise _cross(*problems)
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
        where = f"{self.source}: oauth.client_secret_file"
        path = Path(file) if Path(file).is_absolute() else self._home / file
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


def _connector_cross(data: Mapping[str, Any]) -> list[Located]:
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
                    _NOTHING,
                )
            )
        elif not given:
            found.append(
                (
                    ("oauth", "client_secret"),
                    "give client_secret_env (an environment variable's name) or "
                    "client_secret_file (a file's path)",
                    _NOTHING,
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
    scopes, required = oauth.get("scopes"), REQUIRED_SCOPES[platform]
    if isinstance(scopes, list) and scopes and required not in scopes:
        found.append(
            (
                ("oauth", "scopes"),
                f'must include "{required}" for {PLATFORM_NAMES[platform]}',
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


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.message}"


class InvalidConfig(ConfigError):
    """Every problem found in the configuration, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Config:
    home: Path
    settings: Settings
    connectors: dict[str, ConnectorConfig]

    def connector(self, name: str) -> ConnectorConfig:
        """The connector called `name`, or a ConfigError saying which ones there are."""
        try:
            return self.connectors[name]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none"
            raise ConfigError(
                f"no connector named {name!r} ({CONNECTORS_DIR}/{name}.toml); configured: {known}"
            ) from None


def load(home: Path) -> Config:
    """Read and validate the configuration under `home`; InvalidConfig lists every problem."""
    # Absolute, so that resolved paths do not change meaning if the process changes directory.
    home = Path(home).absolute()
    if not home.is_dir():
        raise ConfigError(f"arsync home {home} is not a directory")
    problems: list[Problem] = []
    settings = _load_settings(home, problems)
    connectors: dict[str, ConnectorConfig] = {}
    directory = home / CONNECTORS_DIR
    if directory.exists() and not directory.is_dir():
        problems.append(Problem(CONNECTORS_DIR, "", "must be a directory"))
    elif directory.is_dir():
        for path in sorted(directory.glob("*.toml")):
            connector = _load_connector(home, path, problems)
            if connector is not None:
                connectors[connector.name] = connector
    if problems:
        raise InvalidConfig(problems)
    assert settings is not None
    return Config(home=home, settings=settings, connectors=connectors)


def _read_toml(path: Path, file: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(file, "", "is not UTF-8 text"))
        return None
    except OSError as err:
        problems.append(Problem(file, "", f"cannot read: {err.strerror}"))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        where = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if where:
            at = f"line {where[1]}, column {where[2]}"
            message = message[: where.start()]
        elif message.endswith(" (at end of document)"):
            at = "at the end of the file"
            message = message.removesuffix(" (at end of document)")
        else:
            at = ""
        problems.append(Problem(file, at, f"invalid TOML: {message}"))
        return None


def _load_settings(home: Path, problems: list[Problem]) -> Settings | None:
    path = home / SETTINGS_FILE
    if not path.exists():
        return Settings().at(home)
    data = _read_toml(path, SETTINGS_FILE, problems)
    if data is None:
        return None
    try:
        return Settings.model_validate(data).at(home)
    except ValidationError as err:
        problems.extend(_translate(err, SETTINGS_FILE, Settings))
        return None


_INLINE_SECRET = (
    "a secret does not belong in a connector file: put it in an environment variable named by "
    "client_secret_env, or in a private file (chmod 600) named by client_secret_file"
)


def _load_connector(home: Path, path: Path, problems: list[Problem]) -> ConnectorConfig | None:
    file = path.relative_to(home).as_posix()
    if not path.is_file():
        problems.append(Problem(file, "", "must be a file"))
        return None
    found: list[Problem] = []
    name = path.stem
    if not NAME_PATTERN.match(name):
        found.append(
            Problem(
                file,
                "",
                "the file name must be lowercase letters, digits and hyphens, starting with a "
                "letter or digit (e.g. acme-books.toml)",
            )
        )
        name = "invalid-name"  # still check the contents, so all problems come out together
    data = _read_toml(path, file, found)
    if data is None:
        problems.extend(found)
        return None
    inline_secret = False
    if "name" in data:
        data.pop("name")
        found.append(Problem(file, "name", "unknown key (a connector's name is its file name)"))
    if "client_secret" in data:
        data.pop("client_secret")
        inline_secret = True
        found.append(Problem(file, "client_secret", _INLINE_SECRET))
    oauth = data.get("oauth")
    if isinstance(oauth, dict) and "client_secret" in oauth:
        data["oauth"] = {k: v for k, v in oauth.items() if k != "client_secret"}
        inline_secret = True
        found.append(Problem(file, "oauth.client_secret", _INLINE_SECRET))
    data["name"] = name
    connector: ConnectorConfig | None = None
    try:
        connector = ConnectorConfig.model_validate(data).at(home)
    except ValidationError as err:
        # Checks between keys run on the raw data, so they are reported even when some other
        # key is invalid (the model's own check only runs once every key is valid).
        located = _connector_cross(data)
        translated = _translate(err, file, ConnectorConfig, cross=False)
        translated += [_problem(file, loc, message, value) for loc, message, value in located]
        for problem in translated:
            # The refusal of an inline secret already says what to give instead.
            if not (inline_secret and problem.key == "oauth.client_secret"):
                found.append(problem)
    problems.extend(found)
    return None if found else connector


# --- turning pydantic's errors into sentences ------------------------------------------------

_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text in quotes",
    "list_type": 'must be a list, like ["a", "b"]',
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "missing": "is required",
}


def _translate(
    err: ValidationError, file: str, model: type[BaseModel], *, cross: bool = True
) -> list[Problem]:
    problems: list[Problem] = []
    for detail in err.errors(include_url=False):
        loc = tuple(detail["loc"])
        if detail["type"] == _CROSS:
            if not cross:
                continue
            for rel, message, value in detail.get("ctx", {})["problems"]:
                problems.append(_problem(file, loc + tuple(rel), message, value))
        elif detail["type"] == "extra_forbidden":
            problems.append(_problem(file, loc, _unknown_key(model, loc), _NOTHING))
        elif detail["type"] == "missing":
            problems.append(_problem(file, loc, "is required", _NOTHING))
        else:
            problems.append(_problem(file, loc, _sentence(detail), detail.get("input", _NOTHING)))
    return problems


def _sentence(detail: ErrorDetails) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "literal_error":
        return "must be " + str(ctx.get("expected", "")).replace("'", '"')
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        words = {
            "greater_than_equal": ("at least", "ge"),
            "less_than_equal": ("at most", "le"),
            "greater_than": ("more than", "gt"),
            "less_than": ("less than", "lt"),
        }[kind]
        return f"must be {words[0]} {ctx.get(words[1])}"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    message = detail["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    return message[:1].lower() + message[1:]


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _problem(file: str, loc: tuple[int | str, ...], message: str, value: object) -> Problem:
    if value is not _NOTHING and not _is_secret(loc):
        message = f"{message}, got {_show(value)}"
    return Problem(file, _key(loc), message)


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    # Never echo what might be a pasted secret: anything called *secret*, or oauth = "…".
    return any("secret" in str(part) for part in loc) or loc == ("oauth",)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, str):
        # A database URL may carry a password; it is not ours to print.
        shown = json.dumps(re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", value))
    else:
        shown = json.dumps(value, default=str)
    return shown if len(shown) <= 80 else shown[:77] + "…"


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a table takes (aliases as written in the file) and their annotations."""
    return {
        (info.alias or name): info.annotation
        for name, info in model.model_fields.items()
        if not (model is ConnectorConfig and name == "name")
    }


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated or origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _unknown_key(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    table: type[BaseModel] | None = model
    for part in loc[:-1]:
        table = _submodel(_fields(table).get(str(part))) if table is not None else None
    if table is None:
        return "unknown key"
    key = str(loc[-1])
    known = _fields(table)
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f'unknown key (did you mean "{by_lower[close[0]]}"?)'
    # A key written outside its table, e.g. `interval = "15m"` above [sync].
    for table_key, annotation in known.items():
        sub = _submodel(annotation)
        if sub is not None and key in _fields(sub):
            return f"unknown key here (it belongs in [{_key((*loc[:-1], table_key))}])"
    return f"unknown key (known keys: {', '.join(known)})"
