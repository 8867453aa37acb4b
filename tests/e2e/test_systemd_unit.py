"""deploy/systemd/arsync.service: hardened, valid, and true to arsync, its config and the README.

The unit is read by systemd's own analyzer (`systemd-analyze security --offline=yes` for the
exposure score, `systemd-analyze verify` for everything else), which CI installs: without it
these tests fail rather than skip. The rest parses the unit and checks it against arsync (the
`run` command, the default stop bound) and against the README's "Install as a service", which
must tell the user where every credential the unit loads comes from and how to point at it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
import typer.main

from arsync.cli import app
from arsync.config.models import DaemonSettings, parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "systemd"
UNIT = DEPLOY / "arsync.service"
SYSUSERS = DEPLOY / "arsync.sysusers.conf"
README = ROOT / "README.md"
SETTINGS = ROOT / "config" / "arsync.toml"
MAX_EXPOSURE = 1.5

Unit = dict[str, list[tuple[str, str]]]


# --- reading the unit ------------------------------------------------------------------------


def parse_unit(text: str) -> Unit:
    """Sections of key=value pairs in order, as systemd reads them (comments, continuations)."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = logical + raw.strip() if logical else raw.strip()
        if line.endswith("\\"):
            logical = line[:-1] + " "
            continue
        logical = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, key: str, section: str = "Service") -> list[str]:
    """Every value given for `key`; an empty assignment resets the list, as in systemd."""
    found: list[str] = []
    for name, value in unit.get(section, []):
        if name == key:
            found = [] if value == "" else [*found, value]
    return found


def one(unit: Unit, key: str, section: str = "Service") -> str:
    given = values(unit, key, section)
    assert len(given) == 1, f"{key}= must be set exactly once in [{section}], found {given}"
    return given[0]


_SPAN_UNITS = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}


def timespan(value: str) -> timedelta:
    """A systemd time span ("60s", "5min", "1min 30s", a bare number of seconds)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+\s*", value), value
    seconds = 0.0
    for number, unit in parts:
        assert unit in _SPAN_UNITS, f"unknown time unit {unit!r} in {value!r}"
        seconds += float(number) * _SPAN_UNITS[unit]
    return timedelta(seconds=seconds)


def exec_argv(value: str) -> list[str]:
    """An Exec*= command line, its special prefixes (@-:+!) taken off the executable."""
    argv = shlex.split(value)
    argv[0] = argv[0].lstrip("@-:+!")
    return argv


def install_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Install as a service\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README.md has no '## Install as a service' section before the next one"
    return match.group(1)


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


# --- systemd's analyzer ----------------------------------------------------------------------


def analyze(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail(
            "systemd-analyze is not installed, so the service unit cannot be checked: install "
            "systemd's analyzer (Debian/Ubuntu: apt-get install systemd; .ci/run does it)"
        )
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_exposure_is_at_most_one_and_a_half() -> None:
    done = analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    said = done.stdout + done.stderr
    match = re.search(r"Overall exposure level for arsync\.service: (\d+(?:\.\d+)?)", said)
    assert match, f"no overall exposure level in the analyzer's answer:\n{said}"
    exposure = float(match.group(1))
    exposed = "\n".join(line for line in said.splitlines() if line.lstrip().startswith("✗"))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}; exposed:\n{exposed}"
    assert done.returncode == 0, said


def _complaints(said: str) -> list[str]:
    """The analyzer's lines about arsync.service itself (a dependency's own are not ours)."""
    return [line for line in said.splitlines() if "arsync.service" in line]


def test_unit_verifies_with_every_command_present(tmp_path: Path) -> None:
    """Every directive is checked: the commands absent on this machine (arsync itself, unless
    installed) are swapped for one that exists, which is all `verify` asks of them."""
    text = UNIT.read_text(encoding="utf-8")
    for key in ("ExecStart", "ExecReload"):
        for command in values(parse_unit(text), key):
            executable = exec_argv(command)[0]
            if not os.access(executable, os.X_OK):
                text = text.replace(f"{key}={executable}", f"{key}={sys.executable}")
    (tmp_path / UNIT.name).write_text(text, encoding="utf-8")
    done = analyze("verify", "--man=no", "--recursive-errors=no", UNIT.name, cwd=tmp_path)
    said = done.stdout + done.stderr
    assert done.returncode == 0 and not _complaints(said), said


def test_unit_as_shipped_verifies_but_for_commands_not_installed_here() -> None:
    """The file itself: its only complaint may be a command not installed on this machine."""
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    absent = {
        exec_argv(command)[0]
        for key in ("ExecStart", "ExecReload")
        for command in values(unit, key)
        if not os.access(exec_argv(command)[0], os.X_OK)
    }
    done = analyze("verify", "--man=no", "--recursive-errors=no", str(UNIT))
    said = done.stdout + done.stderr
    allowed = re.compile(r"arsync\.service: Command (\S+) is not executable: No such file")
    for line in _complaints(said):
        match = allowed.search(line)
        assert match and match.group(1) in absent, f"unexpected complaint: {line}\n{said}"
    if not absent:
        assert done.returncode == 0, said


# --- what the unit says ----------------------------------------------------------------------


def test_it_runs_the_arsync_run_service(unit: Unit) -> None:
    argv = exec_argv(one(unit, "ExecStart"))
    assert Path(argv[0]).name == "arsync" and Path(argv[0]).is_absolute(), argv
    assert argv[1:] == ["run"], f"ExecStart= must run `arsync run` (the service): {argv}"
    assert "run" in getattr(typer.main.get_command(app), "commands", {}), "no `arsync run`"
    # where the README's system-wide pipx puts the command
    assert f"PIPX_BIN_DIR={Path(argv[0]).parent}" in install_section()
    # reload is SIGHUP to the main process, which arsync takes as "read the configuration again"
    reload = exec_argv(one(unit, "ExecReload"))
    assert Path(reload[0]).name == "kill" and reload[1:] == ["-HUP", "$MAINPID"], reload


def test_systemd_knows_when_it_is_ready_alive_and_stopped(unit: Unit) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert timespan(one(unit, "WatchdogSec")) > timedelta(0)
    assert one(unit, "Restart") == "on-failure"
    stop = timespan(one(unit, "TimeoutStopSec"))
    default = DaemonSettings().stop_within
    assert default == timedelta(seconds=30)
    assert stop > default, f"TimeoutStopSec={stop} must exceed stop_within ({default})"
    shipped = tomllib.loads(SETTINGS.read_text(encoding="utf-8"))["daemon"]["stop_within"]
    assert stop > parse_duration(shipped), "config/arsync.toml's stop_within must fit in the unit"


def test_the_sandbox_keeps_to_what_arsync_needs(unit: Unit) -> None:
    """The analyzer's score could stay low with a family or a write path too many: these are
    exactly what the service uses (notify, journal and PostgreSQL's socket; IPv4 and IPv6)."""
    assert values(unit, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert values(unit, "SystemCallFilter")[0] == "@system-service"
    for key in ("NoNewPrivileges", "PrivateTmp", "MemoryDenyWriteExecute", "PrivateDevices"):
        assert one(unit, key) == "yes", key
    assert one(unit, "ProtectSystem") == "strict"
    assert values(unit, "ReadWritePaths") == [], "the state directory is the only writable one"
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):  # set, and to nothing
        assert (key, "") in unit["Service"] and values(unit, key) == [], key


def test_home_store_and_user_are_where_the_readme_puts_them(unit: Unit) -> None:
    guide = install_section()
    home = one(unit, "ConfigurationDirectory")
    assert f"ARSYNC_HOME=%E/{home}" in values(unit, "Environment")
    assert f"/etc/{home}" in guide
    state = one(unit, "StateDirectory")
    assert f'url = "sqlite:////var/lib/{state}/' in guide, "the README's store must be in it"
    assert one(unit, "ProtectSystem") == "strict"
    user = one(unit, "User")
    assert user != "root" and one(unit, "Group") == user
    entries = [line.split() for line in SYSUSERS.read_text().splitlines() if line[:1] == "u"]
    assert [entry[1] for entry in entries] == [user], "arsync.sysusers.conf must create User="


def test_every_credential_it_loads_is_one_the_readme_has_the_user_set(unit: Unit) -> None:
    guide = install_section()
    loaded = [entry.partition(":") for entry in values(unit, "LoadCredential")]
    assert loaded, "the unit loads no credentials"
    named: set[str] = set(re.findall(r"/run/credentials/arsync\.service/([\w.-]+)", guide))
    for name, _, source in loaded:
        assert source.startswith("/"), f"LoadCredential={name}: give the file's path"
        # the user is told to put the secret there...
        assert source in guide, f"the README never says to fill {source} (credential {name})"
        # ...and how arsync then names it: the file itself, or (a folder) <name>_<file>
        assert any(n == name or n.startswith(f"{name}_") for n in named) or (
            f'credential = "{name}"' in guide
        ), f"the README never shows arsync pointed at the credential {name}"
    ids = {name for name, _, _ in loaded}
    for path in named:
        assert any(path == i or path.startswith(f"{i}_") for i in ids), (
            f"the README points at /run/credentials/arsync.service/{path}, which the unit "
            "does not load"
        )
    # the token key: the name config/arsync.toml suggests, and the one the README sets
    suggested = re.search(r'^#\s*credential = "([^"]+)"', SETTINGS.read_text(), re.M)
    assert suggested and suggested.group(1) in ids
    assert f'credential = "{suggested.group(1)}"' in guide
