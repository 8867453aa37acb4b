"""Loading the configuration under an arsync home: every file read, every problem found at once.

An arsync home holds `config/arsync.toml` (daemon settings; missing means the built-in defaults)
and `connectors/NAME.toml`, one file per company link, whose stem is the connector's name.
`load(home)` reads them all and either returns a `Config` or raises one `InvalidConfig` whose
message has a line per problem, each naming the file (relative to home), the dotted key and what
is wrong with the value given. Loading only reads: it writes nothing and resolves no secret.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from arsync.config.models import (
    CONNECTORS_DIR,
    NAME_PATTERN,
    SETTINGS_FILE,
    ConnectorConfig,
    Settings,
    connector_cross,
)
from arsync.config.problems import InvalidConfig, Problem, translate
from arsync.config.problems import problem as located_problem
from arsync.errors import ConfigError

if TYPE_CHECKING:
    # escalation.policy builds on config.models and config.problems: imported when used
    from arsync.escalation.policy import Policy

POLICIES_DIR = "config/policies"


@dataclass(frozen=True)
class Config:
    home: Path
    settings: Settings
    connectors: dict[str, ConnectorConfig]
    #: every policy a connector may name: the built-in ones and config/policies/*.toml
    policies: dict[str, Policy] = field(default_factory=dict)

    def policy_of(self, connector: ConnectorConfig) -> Policy:
        return self.policies[connector.policy]

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
    policies = _load_policies(home, problems)
    for connector in connectors.values():
        if connector.policy not in policies and not any(
            p.file == f"{POLICIES_DIR}/{connector.policy}.toml" for p in problems
        ):
            known = ", ".join(sorted(policies)) or "none"
            problems.append(
                Problem(
                    connector.source,
                    "policy",
                    f'no policy "{connector.policy}" ({POLICIES_DIR}/{connector.policy}.toml); '
                    f"known: {known}",
                )
            )
    if problems:
        raise InvalidConfig(problems)
    assert settings is not None
    return Config(home=home, settings=settings, connectors=connectors, policies=policies)


def _load_policies(home: Path, problems: list[Problem]) -> dict[str, Policy]:
    """The built-in policies, then config/policies/*.toml (a file wins over a built-in)."""
    from arsync.escalation.policy import builtin_policies

    policies = dict(builtin_policies())
    directory = home / POLICIES_DIR
    if directory.exists() and not directory.is_dir():
        problems.append(Problem(POLICIES_DIR, "", "must be a directory"))
        return policies
    for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        file = path.relative_to(home).as_posix()
        if not NAME_PATTERN.match(path.stem):
            problems.append(
                Problem(file, "", "the file name must be lowercase letters, digits and hyphens")
            )
            continue
        data = _read_toml(path, file, problems)
        if data is None:
            continue
        policy = parse_policy(data, path.stem, file, problems)
        if policy is not None:
            policies[path.stem] = policy
    return policies


def parse_policy(
    data: dict[str, Any], name: str, file: str, problems: list[Problem]
) -> Policy | None:
    """A policy from its file's data; its problems (with file and key) go to `problems`."""
    from arsync.escalation.policy import Policy, stage_problems

    if "name" in data:
        problems.append(Problem(file, "name", "unknown key (a policy's name is its file name)"))
        return None
    try:
        return Policy.model_validate({**data, "name": name})
    except ValidationError as err:
        # the stages' own checks run only once every key is valid: run them on the raw data
        found = translate(err, file, Policy)
        stages = data.get("stages")
        if isinstance(stages, list):
            found += [located_problem(file, loc, m, v) for loc, m, v in stage_problems(stages)]
        problems.extend(dict.fromkeys(found))
        return None


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
        problems.extend(translate(err, SETTINGS_FILE, Settings))
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
        located = connector_cross(data)
        translated = translate(err, file, ConnectorConfig, cross=False)
        translated += [
            located_problem(file, loc, message, value) for loc, message, value in located
        ]
        for problem in translated:
            # The refusal of an inline secret already says what to give instead.
            if not (inline_secret and problem.key == "oauth.client_secret"):
                found.append(problem)
    problems.extend(found)
    return None if found else connector
