"""The token key file: made private, refused when open to others, rotated, read as a credential."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from arsync.connectors.oauth import generate_key, load_key
from arsync.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_makes_a_private_key_file_in_private_directories(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "tokens.key"
    ring = load_key(path, create=True)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    # the file holds the key that encrypts: a fresh load decrypts what the first one wrote
    secret = ring.encrypt(b"refresh-me")
    assert load_key(path).decrypt(secret) == b"refresh-me"
    # creating again keeps the existing key
    assert load_key(path, create=True).decrypt(secret) == b"refresh-me"


def test_a_key_file_open_to_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "tokens.key"
    load_key(path, create=True)
    for loose in (0o640, 0o604, 0o620):
        path.chmod(loose)
        with pytest.raises(ConfigError) as caught:
            load_key(path)
        assert str(path) in str(caught.value)
        assert f"chmod 600 {path}" in str(caught.value)
    path.chmod(0o400)
    load_key(path)  # read-only for the owner is fine


def test_rotation_encrypts_with_the_first_key_and_decrypts_with_all(tmp_path: Path) -> None:
    path = tmp_path / "tokens.key"
    old_key = generate_key()
    path.write_text(old_key + "\n")
    path.chmod(0o600)
    stored_before = load_key(path).encrypt(b"token")

    new_key = generate_key()
    path.write_text(f"# rotated\n{new_key}\n\n{old_key}\n")
    ring = load_key(path)
    assert ring.decrypt(stored_before) == b"token"
    stored_after = ring.encrypt(b"token")
    assert Fernet(new_key.encode()).decrypt(stored_after) == b"token"
    with pytest.raises(InvalidToken):
        Fernet(old_key.encode()).decrypt(stored_after)


def test_missing_file_is_refused_unless_creating(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "tokens.key"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_key(path)
    assert str(path) in str(caught.value)
    assert not path.parent.exists()
    with pytest.raises(ConfigError, match="no token key file"):
        load_key(None)


def test_malformed_or_empty_key_files_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = tmp_path / "tokens.key"
    almost = generate_key()[:-2] + "!!"
    path.write_text(f"{generate_key()}\n{almost}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="line 2") as caught:
        load_key(path)
    assert almost not in str(caught.value)
    path.write_text("# nothing here\n\n")
    with pytest.raises(ConfigError, match="holds no key"):
        load_key(path)


def test_a_systemd_credential_is_read_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    key = generate_key()
    fd = os.open(creds / "arsync-key", os.O_WRONLY | os.O_CREAT, 0o400)
    os.write(fd, key.encode() + b"\n")
    os.close(fd)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ring = load_key(None, credential="arsync-key", create=True)
    assert Fernet(key.encode()).decrypt(ring.encrypt(b"x")) == b"x"
    # a credential is never invented: systemd provides it or it is missing
    with pytest.raises(ConfigError, match="does not exist"):
        load_key(None, credential="other-key", create=True)
    assert not (creds / "other-key").exists()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        load_key(None, credential="arsync-key")


def test_a_credential_shown_group_readable_is_systemds_to_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # newer systemd writes a credential 0400 with an ACL for the service's user: stat says 0440
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    key = generate_key()
    (creds / "arsync-key").write_text(key + "\n")
    (creds / "arsync-key").chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ring = load_key(None, credential="arsync-key")
    assert Fernet(key.encode()).decrypt(ring.encrypt(b"x")) == b"x"
    # the same file named as a key file is the owner's to keep private
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key(creds / "arsync-key")
