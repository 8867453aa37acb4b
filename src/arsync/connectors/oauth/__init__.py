"""OAuth 2.0 for QBO and Xero: the key (`keys`), the app and its tokens (`app`), tokens at
rest (`vault`) and the single-flight refresh (`manager`)."""

from __future__ import annotations

from arsync.connectors.oauth.app import (
    DEFAULT_SCOPES,
    XERO_REFRESH_IDLE,
    AuthorizationRequest,
    GrantRefused,
    OAuthApp,
    TokenRecord,
    pkce_challenge,
    safe_error_code,
    token_record_from_reply,
)
from arsync.connectors.oauth.keys import CREDENTIALS_ENV, check_key, generate_key, load_key
from arsync.connectors.oauth.manager import TokenManager
from arsync.connectors.oauth.vault import TokenVault

__all__ = [
    "CREDENTIALS_ENV",
    "DEFAULT_SCOPES",
    "XERO_REFRESH_IDLE",
    "AuthorizationRequest",
    "GrantRefused",
    "OAuthApp",
    "TokenManager",
    "TokenRecord",
    "TokenVault",
    "check_key",
    "generate_key",
    "load_key",
    "pkce_challenge",
    "safe_error_code",
    "token_record_from_reply",
]
