"""Bearer credentials: who is calling, and what they may read or write.

Three kinds of credential arrive as `Authorization: Bearer <credential>`:

- service key `ksk_<43 url-safe characters>`: an opaque random string held by a typing platform's backend,
  compared in constant time with the configured keys (`Settings.service_keys`, entries "name:ksk_…"; the name
  identifies the platform in logs and rate limits). Service keys do not expire; rotate them by configuration.
- user token `kst1.<payload>.<signature>` with payload {"scope": "user", "uid": 42, "iat": …, "exp": …}.
- admin token, the same with {"scope": "admin", "iat": …, "exp": …}.

A token's payload is base64url (unpadded) JSON; its signature is base64url HMAC-SHA256 over the ASCII bytes
"kst1.<payload>" with a token secret. The first of `Settings.token_secrets` signs and every one of them verifies,
so a secret is rotated by putting the new one first, waiting one token lifetime, and dropping the old one.

Who may do what (the Serve app enforces it with `require_scope` and `authorize_user`):

| scope   | POST /v1/tests    | GET /v1/users/{id}/… | deletion, export |
|---------|-------------------|----------------------|------------------|
| service | any user          | any user             | no               |
| admin   | any user          | any user             | both, any user   |
| user    | own id only       | own id only          | export, own id   |

A platform backend submits its users' tests and shows them their analytics, so a service key reads any user's
data. A user submits only their own tests: the dashboard's practice box posts what the typist just typed.
Deletion is an operator action, so admin only; a typist may export their own data (GDPR access), as may an admin.

Every failure is an AuthError: 401 when the credential is missing, malformed, unknown, forged or expired (the
response then carries a `WWW-Authenticate` header), 403 when a valid credential may not do what it asks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from app.config import SECRETS_FILE_NAME, Settings, read_secrets_file
from app.identity import MAX_USER_ID

Scope = Literal["service", "user", "admin"]

TOKEN_PREFIX = "kst1"
SERVICE_KEY_PREFIX = "ksk_"
SUBMIT_SCOPES: tuple[Scope, ...] = ("service", "admin", "user")  # users further limited by authorize_user
READ_SCOPES: tuple[Scope, ...] = ("service", "admin", "user")  # users further limited by authorize_user
ADMIN_SCOPES: tuple[Scope, ...] = ("admin",)

MAX_CREDENTIAL_CHARS = 2048  # a real token is ~150 characters; refuse to decode or hash anything much larger
CLOCK_SKEW_S = 60  # tolerated difference between the issuer's clock and ours for `iat`


class AuthError(Exception):
    """A request's credential is refused: `status` 401 (who are you?) or 403 (not allowed), a stable `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def headers(self) -> dict[str, str]:
        """The response headers RFC 6750 asks for: a challenge on 401, the missing scope on 403."""
        if self.status == 401:
            error = "" if self.code == "missing_credentials" else ', error="invalid_token"'
            return {"WWW-Authenticate": f'Bearer realm="keyscope"{error}'}
        return {"WWW-Authenticate": 'Bearer realm="keyscope", error="insufficient_scope"'}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. `name` is stable per caller and names its rate-limit bucket."""

    scope: Scope
    user_id: int | None
    name: str


@dataclass(frozen=True)
class AuthConfig:
    """The secrets `authenticate` checks against, decoded once per process (build it with `from_settings`)."""

    token_secrets: tuple[bytes, ...]
    service_keys: tuple[tuple[str, bytes], ...]  # (name, key)

    def __repr__(self) -> str:  # never print the secrets
        return f"AuthConfig({len(self.token_secrets)} token secrets, {len(self.service_keys)} service keys)"

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        return cls(
            token_secrets=tuple(s.encode() for s in settings.token_secrets),
            service_keys=tuple(parse_service_key(entry) for entry in settings.service_keys),
        )


def parse_service_key(entry: str) -> tuple[str, bytes]:
    """(name, key) of a configured entry "name:ksk_…"; a bare key is named by a digest prefix, never by itself."""
    name, sep, key = entry.partition(":")
    if not sep:
        name, key = "", entry
    if not key.startswith(SERVICE_KEY_PREFIX):
        raise ValueError(f"a service key must start with {SERVICE_KEY_PREFIX!r} (entry named {name or '?'!r})")
    return name or "key-" + hashlib.sha256(key.encode()).hexdigest()[:8], key.encode()


def new_service_key() -> str:
    """A fresh random service key: 256 bits, url-safe."""
    return SERVICE_KEY_PREFIX + secrets.token_urlsafe(32)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # Strict alphabet check first: urlsafe_b64decode silently drops characters outside it.
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, signed: str) -> bytes:
    return hmac.new(secret, signed.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    secret: str | bytes, scope: Scope, user_id: int | None = None, ttl_s: int = 3600, now: float | None = None
) -> str:
    """A signed `kst1.` token for a user (needs `user_id`) or an admin, valid for `ttl_s` seconds from `now`."""
    if scope not in ("user", "admin"):
        raise ValueError(f"tokens are for 'user' or 'admin', not {scope!r} (services use keys)")
    if scope == "user" and (not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 1):
        raise ValueError("a user token needs a positive integer user_id")
    if scope == "admin" and user_id is not None:
        raise ValueError("an admin token carries no user_id")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if not secret:
        raise ValueError("no token secret configured")
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"scope": scope}
    if user_id is not None:
        payload["uid"] = user_id
    payload.update(iat=issued, exp=issued + int(ttl_s))
    body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
    signed = f"{TOKEN_PREFIX}.{body}"
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{signed}.{_b64encode(_signature(key, signed))}"


def _malformed(what: str) -> AuthError:
    return AuthError(401, "malformed_credentials", what)


def _verify_token(credential: str, config: AuthConfig, now: float) -> Principal:
    parts = credential.split(".")
    if len(parts) != 3:
        raise _malformed("a token has three dot-separated parts")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise _malformed("the token's signature is not base64url") from None
    if not config.token_secrets:
        raise AuthError(401, "invalid_credentials", "tokens are not accepted: no token secret is configured")
    # Check every secret (no early exit) so timing says nothing about which one matched.
    valid = False
    for secret in config.token_secrets:
        valid |= hmac.compare_digest(_signature(secret, signed), signature)
    if not valid:
        raise AuthError(401, "invalid_credentials", "the token's signature does not verify")
    # Only a payload we signed reaches here, but it may come from an older issuer: check every field anyway.
    try:
        payload = json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error):
        raise _malformed("the token's payload is not base64url JSON") from None
    if not isinstance(payload, dict):
        raise _malformed("the token's payload is not an object")
    scope, uid, iat, exp = (payload.get(k) for k in ("scope", "uid", "iat", "exp"))
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (iat, exp)):
        raise _malformed("the token needs numeric iat and exp")
    if now >= exp:
        raise AuthError(401, "token_expired", "the token has expired; ask for a new one")
    if iat > now + CLOCK_SKEW_S:
        raise AuthError(401, "invalid_credentials", "the token was issued in the future")
    if scope == "admin":
        return Principal("admin", None, "admin")
    if scope == "user":
        if not isinstance(uid, int) or isinstance(uid, bool) or not 1 <= uid <= MAX_USER_ID:
            raise _malformed("a user token needs a positive integer uid")
        return Principal("user", uid, f"user:{uid}")
    raise _malformed(f"unknown token scope {scope!r}")


def _verify_service_key(credential: str, config: AuthConfig) -> Principal:
    key = credential.encode()
    matched: str | None = None
    for name, expected in config.service_keys:  # constant time per key, and no early exit
        if hmac.compare_digest(key, expected):
            matched = name
    if matched is None:
        raise AuthError(401, "invalid_credentials", "unknown service key")
    return Principal("service", None, f"service:{matched}")


def authenticate(authorization_header: str | None, config: AuthConfig, now: float | None = None) -> Principal:
    """The Principal of an `Authorization` header's bearer credential; AuthError(401) when there is none valid."""
    if not authorization_header or not authorization_header.strip():
        raise AuthError(401, "missing_credentials", "send `Authorization: Bearer <token or service key>`")
    scheme, _, credential = authorization_header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _malformed("the Authorization header must be `Bearer <token or service key>`")
    if len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
        raise _malformed("the credential is not a keyscope token or service key")
    if credential.startswith(SERVICE_KEY_PREFIX):
        return _verify_service_key(credential, config)
    if credential.startswith(TOKEN_PREFIX + "."):
        return _verify_token(credential, config, time.time() if now is None else now)
    raise _malformed("the credential is not a keyscope token or service key")


def require_scope(principal: Principal, *scopes: Scope) -> None:
    """Nothing if the principal's scope is one of `scopes`; AuthError(403, "insufficient_scope") otherwise."""
    if principal.scope not in scopes:
        raise AuthError(
            403, "insufficient_scope", f"a {principal.scope} credential may not do this (needs {' or '.join(scopes)})"
        )


def authorize_user(principal: Principal, user_id: int) -> None:
    """Nothing if the principal may read `user_id`'s data; AuthError(403, "forbidden") for another user's token."""
    require_scope(principal, *READ_SCOPES)
    if principal.scope == "user" and principal.user_id != user_id:
        raise AuthError(403, "forbidden", "a user token reads only its own user's data")


# Local secrets ------------------------------------------------------------------------------------------------------


def ensure_local_secrets(data_dir: Path) -> dict[str, list[str]]:
    """The local stack's secrets from `<data_dir>/secrets.json`, generated (mode 0600) on the first call."""
    path = Path(data_dir) / SECRETS_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generated = {"token_secrets": [secrets.token_urlsafe(32)], "service_keys": [f"local:{new_service_key()}"]}
        tmp = path.with_name(f".{SECRETS_FILE_NAME}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(generated, out, indent=2)
        try:
            os.link(tmp, path)  # atomic and never overwrites: of two concurrent `up`s, the first file wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return {name: list(values) for name, values in read_secrets_file(path).items()}


def settings_with_local_secrets(settings: Settings) -> Settings:
    """`settings` with empty token secrets or service keys filled from the local secrets file (created if need be)."""
    if settings.token_secrets and settings.service_keys:
        return settings
    stored = ensure_local_secrets(settings.data_dir)
    return replace(
        settings,
        token_secrets=settings.token_secrets or tuple(stored["token_secrets"]),
        service_keys=settings.service_keys or tuple(stored["service_keys"]),
    )
