"""The key that encrypts tokens at rest: a file of Fernet keys, or a systemd credential."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, MultiFernet

from arsync.errors import ConfigError

log = structlog.get_logger("arsync.oauth")

#: systemd's LoadCredential= puts credentials in this directory
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def generate_key() -> str:
    """A new Fernet key as the text one line of a key file holds."""
    return Fernet.generate_key().decode("ascii")


def load_key(
    path: Path | None, *, credential: str | None = None, create: bool = False
) -> MultiFernet:
    """The key ring that encrypts tokens at rest.

    The file holds Fernet keys, one a line (blank lines and `#` comments are skipped): the first
    encrypts, every one decrypts, so a key is rotated by putting a new one on top. `credential`
    reads `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`) instead of `path`.
    `create` makes a missing file (mode 0600, new directories 0700); a credential never is made.
    """
    if credential is not None:
        directory = os.environ.get(CREDENTIALS_ENV)
        if not directory:
            raise ConfigError(
                f"the token key is configured as the credential {credential!r}, but "
                f"${CREDENTIALS_ENV} is not set: run arsync under systemd with "
                f"LoadCredential={credential}:/path/to/key, or configure the key file's path"
            )
        path = Path(directory) / credential
        create = False  # systemd hands credentials over read-only
    if path is None:
        raise ConfigError("no token key file is configured (it encrypts the stored tokens)")
    if create and not path.exists():
        _create_key_file(path)
    # systemd guards a credential itself (0400 plus an ACL for the service's user, which a
    # stat shows as 0440 on a tmpfs with ACLs): its mode is not the owner's to fix
    return MultiFernet(
        [Fernet(key) for key in _read_key_file(path, credential=credential is not None)]
    )


def _create_key_file(path: Path) -> None:
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for directory in reversed(missing):
            # not Path.mkdir(parents=True): it makes the parents with the default mode
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another process made it first: read theirs
    except OSError as err:
        raise ConfigError(f"cannot create the token key file {path}: {err.strerror}") from err
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(generate_key() + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.info("token key created", path=str(path))


def _read_key_file(path: Path, *, credential: bool = False) -> list[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"the token key file {path} does not exist: restore it from a backup, or let arsync "
            "create a new one (tokens stored with the old key then need `arsync connect` again)"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read the token key file {path}: {err.strerror}") from err
    # fstat on the open file: what is checked is what is read
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ConfigError(
            f"the token key file {path} is {what}: secrets.key_file must name a file "
            "(arsync creates it on the first `arsync connect`)"
        )
    with os.fdopen(fd, "rb") as handle:
        mode = info.st_mode & 0o777
        if mode & 0o077 and not credential:
            raise ConfigError(
                f"the token key file {path} is open to other users (mode {mode:04o}); "
                f"run `chmod 600 {path}`"
            )
        try:
            raw = handle.read()
        except OSError as err:
            raise ConfigError(f"cannot read the token key file {path}: {err.strerror}") from err
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"the token key file {path} is not a text file of keys") from None
    keys: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            Fernet(text)
        except ValueError:
            # never echo the line: it may be a real key with a typo
            raise ConfigError(
                f"line {number} of the token key file {path} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
        keys.append(text.encode("ascii"))
    if not keys:
        raise ConfigError(f"the token key file {path} holds no key")
    return keys


def check_key(path: Path | None, *, credential: str | None = None) -> None:
    """Check, creating nothing, that `load_key(..., create=True)` would succeed: the key is
    readable, or its file can be made."""
    if credential is not None or path is None or path.exists() or path.is_symlink():
        load_key(path, credential=credential)
        return
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create the token key file {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the token key file {path}: {existing} is not writable")
