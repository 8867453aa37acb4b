"""`arsync backup` and `arsync restore`: a SQLite store copied whole while in use, and put back.

The commands only parse, ask and print; the copying, checking and swapping is the store's
(`arsync.store.backup`), since only the store speaks SQL. Their imports wait inside the commands:
every arsync command pays for what this module imports when the CLI starts.
"""

# No `from __future__ import annotations` here: typer reads the commands' annotations, and
# HomeOption is a name local to register(), which only annotations evaluated there can see.
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arsync.errors import ArsyncError

if TYPE_CHECKING:
    from arsync.config import Config

#: where `arsync backup` writes when not told, under the home
BACKUPS_DIR = "backups"


def stamp(moment: datetime) -> str:
    """A moment as it appears in backup names: UTC, YYYYmmdd-HHMMSS."""
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def size(count: int) -> str:
    """A file's size in words people read: "812 bytes", "3.4 MB"."""
    if count < 1000:
        return f"{count} bytes"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `arsync` app."""
    # cli.py calls this at the end of its own import, so what it defines is there to use
    from arsync.cli import HomeOption, _configured, _fail

    @app.command()
    def backup(
        home: HomeOption = Path(),
        to: Annotated[
            Path | None,
            typer.Option(
                "--to",
                dir_okay=False,
                help="The new file to write (default: backups/arsync-YYYYmmdd-HHMMSS.db beside "
                "the store's file, UTC: a folder the service may write to).",
            ),
        ] = None,
    ) -> None:
        """Copy the store to a new file, consistently, even while the service runs.

        Uses SQLite's online backup, so the copy is the store as it was at one moment. The file
        is private (0600), appears under its name only once whole, and is checked (SQLite's
        integrity check, arsync's schema revision). A store on PostgreSQL is backed up with
        pg_dump instead.
        """
        from arsync.store.backup import backup as copy_store

        config = _configured(home)
        try:
            target = to or _default_target(config)
            made = copy_store(config.settings.store_url(), target)
        except ArsyncError as err:
            raise _fail(err) from err
        typer.echo(
            f"Backed up the store to {made.path} ({size(made.size)}, schema revision "
            f"{made.revision})."
        )

    @app.command()
    def restore(
        file: Annotated[
            Path, typer.Argument(dir_okay=False, help="A backup written by `arsync backup`.")
        ],
        home: HomeOption = Path(),
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Replace the store without asking.")
        ] = False,
    ) -> None:
        """Put a backup in the store's place; the store it replaces is kept beside it.

        The file must be an arsync store, whole, from this arsync or an older one (an older
        one is migrated at the next start). Stop the service first (systemctl stop arsync):
        restore refuses while any arsync process uses the store. The current store is kept as
        <store>.before-restore-YYYYmmdd-HHMMSS and the backup takes its place in one step. Asks
        first, unless --yes; without a terminal to ask on, it needs --yes.
        """
        from arsync.runtime import clock_for
        from arsync.store.backup import restoring

        config = _configured(home)
        try:
            with restoring(config.settings.store_url(), file) as candidate:
                candidate.check_unused()
                if not yes:
                    _confirm(candidate.store, candidate.source, candidate.revision)
                restored = candidate.install(stamp(clock_for(config).now()))
        except ArsyncError as err:
            raise _fail(err) from err
        typer.echo(
            f"Restored {file} (schema revision {restored.revision}) as the store {restored.store}."
        )
        if restored.aside is not None:
            typer.echo(f"The store it replaced is kept as {restored.aside}.")
        if restored.migrates:
            typer.echo(
                f"The backup is from an older arsync (schema revision {restored.revision}): "
                "its schema is migrated to this arsync's when arsync next opens the store."
            )
        typer.echo(
            "What arsync recorded after the backup was made (syncs, actions sent) is not in it; "
            "the next sync reads the books again. If the service was stopped for this, start "
            "it again: systemctl start arsync"
        )


def _confirm(store: Path, source: Path, revision: str) -> None:
    """Ask on the terminal before the store is replaced; refuse when there is none to ask on."""
    if not sys.stdin.isatty():
        typer.secho(
            f"error: arsync restore replaces the store {store}: give --yes to go ahead "
            "(there is no terminal to ask on)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    question = (
        f"Replace the store {store} with {source} (schema revision {revision})? "
        "The current store is kept beside it"
    )
    if not typer.confirm(question, default=False):
        typer.secho("restore: given up; the store is unchanged", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)


def _default_target(config: "Config") -> Path:
    """backups/ beside the store's file: the home may be read-only to the service (systemd's
    ConfigurationDirectory=), the store's folder never is."""
    from arsync.runtime import clock_for
    from arsync.store.engine import parse_url, sqlite_path

    database = sqlite_path(parse_url(config.settings.store_url()))
    folder = database.parent if database is not None else config.home
    return folder / BACKUPS_DIR / f"arsync-{stamp(clock_for(config).now())}.db"
