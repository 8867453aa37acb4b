"""Configuration: config/arsync.toml and connectors/*.toml, validated with every problem at once.

`models` holds what each file may say, `loading` reads an arsync home, and `problems` turns
validation errors into "file: key: message" lines.
"""

from __future__ import annotations

from arsync.config.loading import Config, load
from arsync.config.models import (
    CONNECTORS_DIR,
    DEFAULT_KEY_FILE,
    DEFAULT_STORE_URL,
    NAME_PATTERN,
    SETTINGS_FILE,
    ConnectorConfig,
    Settings,
    parse_duration,
)
from arsync.config.problems import InvalidConfig, Problem

__all__ = [
    "CONNECTORS_DIR",
    "DEFAULT_KEY_FILE",
    "DEFAULT_STORE_URL",
    "NAME_PATTERN",
    "SETTINGS_FILE",
    "Config",
    "ConnectorConfig",
    "InvalidConfig",
    "Problem",
    "Settings",
    "load",
    "parse_duration",
]
