"""Bearer credentials: who is calling, and what they may read or write.

Three kinds of credential arrive as `Authorization: Bearer <credential>`:

- service key `ksk_<43 url-safe characters>`: an opaque random string held by a typing platform's backend,
  compared in constant time with the configured keys (`Settings.service_keys`, entries "name:ksk_…"; the name
  identifies the platform in logs and rate limits). Service keys do not expire; rotate them by configuration.
- keyscope token: a JWT (RFC 7519) signed HS256 with a token secret, issued by `issue_token` (`keyscope token`):
  user {"sub": "42", "scope": "user", "iat": …, "exp": …}, admin {"scope": "admin", "iat": …, "exp": …}, both
  with "aud" when `Settings.jwt_audience` is set. Any JWT library holding the secret can mint one (a platform's
  backend, say). The first of `Settings.token_secrets` signs and every one of them verifies, so a secret is
  rotated by putting the new one first, waiting one token lifetime, and dropping the old one.
- platform token: a JWT that a typing platform's own identity provider signs RS256 or ES256, verified against the
  public keys it publishes at `Settings.jwks_url` (the header's `kid` picks the key). It must carry
  `Settings.jwt_issuer` as `iss` (when set) and `Settings.jwt_audience` as `aud` (required with a JWKS URL: an
  identity provider signs tokens for many services, and only those meant for keyscope may pass). The keyscope
  user id is the `Settings.jwt_user_claim` claim (default `sub`; a decimal string or an integer). A platform token
  is always a user token, whatever scopes it lists: deleting or exporting anyone's data stays with keyscope's own
  admin tokens, so a compromised or misconfigured identity provider can read and submit as its users, no more.

Every token needs `exp` and `iat`; `iat` may lie up to CLOCK_SKEW_S in the future, `exp` is exact. The algorithm
is chosen by the key, never by the token: HS256 only with the token secrets, RS256/ES256 only with a JWKS key
whose own algorithm matches, `alg: none` never (RFC 8725). The JWKS is fetched only when an RS256/ES256 token
arrives, with a timeout, and cached (JWKS_CACHE_S); an unknown `kid` refetches it at most every
JWKS_COOLDOWN_S. The fetch blocks the calling thread, at most JWKS_TIMEOUT_S, once per cache lifetime.

Who may do what (the Serve app enforces it with `require_scope` and `authorize_user`):

| scope   | POST /v1/tests    | GET /v1/users/{id}/… | deletion, export |
|---------|-------------------|----------------------|------------------|
| service | any user          | any user             | no               |
| admin   | any user          | any user             | both, any user   |
| user    | own id only       | own id only          | export, own id   |

A platform backend submits its users' tests and shows them their analytics, so a service key reads any user's
data. A user submits only their own tests: the dashboard's practice box posts what the typist just typed.
Deletion is an operator action, so admin only; a typist may export their own data (GDPR access), as may an admin.

Every failure is an AuthError: 401 when the credential is missing, malformed, unknown, forged, expired or meant
for another audience (the response then carries a `WWW-Authenticate` header), 403 when a valid credential may not
do what it asks, 503 when a platform token cannot be checked because its JWKS cannot be fetched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import jwt

from app.config import SECRETS_FILE_NAME, Settings, read_secrets_file
from app.identity import MAX_USER_ID

log = logging.getLogger("keyscope.auth")

Scope = Literal["service", "user", "admin"]

SERVICE_KEY_PREFIX = "ksk_"
SUBMIT_SCOPES: tuple[Scope, ...] = ("service", "admin", "user")  # users further limited by authorize_user
READ_SCOPES: tuple[Scope, ...] = ("service", "admin", "user")  # users further limited by authorize_user
ADMIN_SCOPES: tuple[Scope, ...] = ("admin",)

SECRET_ALGORITHM = "HS256"  # keyscope's own tokens
JWKS_ALGORITHMS = ("RS256", "ES256")  # platform tokens; only ever verified with a public key from the JWKS
# Our tokens are ~200 characters, an identity provider's with its claims a few KB; refuse to parse anything larger.
MAX_CREDENTIAL_CHARS = 8192
CLOCK_SKEW_S = 60  # tolerated difference between the issuer's clock and ours for `iat`
JWKS_TIMEOUT_S = 3.0  # one fetch of the JWKS
JWKS_CACHE_S = 300.0  # how long a fetched JWKS is trusted before it is fetched again
JWKS_COOLDOWN_S = 30.0  # least time between refetches caused by unknown key ids (they are attacker-chosen)
JWKS_RETRY_S = 5  # after a failed fetch, refuse platform tokens (503) this long rather than wait on it per request
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

# Times are checked by `_check_times` against the caller's `now`; PyJWT checks signature, aud, iss and claim types.
_DECODE_OPTIONS: dict[str, Any] = {
    "require": ["exp", "iat"],
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
}


class AuthError(Exception):
    """A request's credential is refused: `status` 401 (who are you?), 403 (not allowed) or 503 (cannot check
    now), and a stable `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def headers(self) -> dict[str, str]:
        """The response headers RFC 6750 asks for: a challenge on 401, the missing scope on 403; on 503 when to
        retry."""
        if self.status == 401:
            error = "" if self.code == "missing_credentials" else ', error="invalid_token"'
            return {"WWW-Authenticate": f'Bearer realm="keyscope"{error}'}
        if self.status == 403:
            return {"WWW-Authenticate": 'Bearer realm="keyscope", error="insufficient_scope"'}
        return {"Retry-After": str(JWKS_RETRY_S)}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. `name` is stable per caller and names its rate-limit bucket."""

    scope: Scope
    user_id: int | None
    name: str


class PlatformKeys:
    """A typing platform's token-signing public keys, read from its JWKS URL when a token first needs one.

    PyJWKClient caches the key set (JWKS_CACHE_S) and refetches it for an unknown `kid` at most every
    JWKS_COOLDOWN_S. After a failed fetch, lookups fail fast (503) for JWKS_RETRY_S, so an unreachable identity
    provider costs one timeout per JWKS_RETRY_S, not one per request.
    """

    def __init__(self, url: str, timeout_s: float = JWKS_TIMEOUT_S) -> None:
        self.url = url
        self._client = jwt.PyJWKClient(
            url, cache_jwk_set=True, lifespan=JWKS_CACHE_S, timeout=timeout_s, cooldown_duration=JWKS_COOLDOWN_S
        )
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"PlatformKeys({self.url!r})"

    def _unavailable(self, exc: Exception) -> AuthError:
        self._retry_at = time.monotonic() + JWKS_RETRY_S
        log.warning("the JWKS at %s is unavailable: %s", self.url, exc)
        return AuthError(
            503, "auth_unavailable", "the platform's signing keys cannot be fetched right now; retry later"
        )

    def signing_key(self, kid: str) -> jwt.PyJWK:
        """The JWKS key named `kid`; AuthError 401 when there is none, 503 when the JWKS cannot be read."""
        if time.monotonic() < self._retry_at:
            raise AuthError(
                503, "auth_unavailable", "the platform's signing keys cannot be fetched right now; retry later"
            )
        try:  # first the (cached) set on its own: an unreadable JWKS is our outage, not the caller's fault
            self._client.get_signing_keys()
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as exc:  # ValueError: the body is not JSON
            raise self._unavailable(exc) from None
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise self._unavailable(exc) from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError):
            raise AuthError(401, "invalid_credentials", "unknown key id: the token's kid is not in the JWKS") from None


def _check_jwks_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS):
        return
    raise ValueError(f"the JWKS URL must be https:// (http:// only on loopback), got {url!r}")


@dataclass(frozen=True)
class AuthConfig:
    """The secrets and trusted keys `authenticate` checks against, built once per process (`from_settings`)."""

    token_secrets: tuple[bytes, ...]
    service_keys: tuple[tuple[str, bytes], ...]  # (name, key)
    audience: str | None = None  # the `aud` every token must carry
    issuer: str | None = None  # the `iss` a platform token must carry
    user_claim: str = "sub"  # where a platform token holds the user id
    platform_keys: PlatformKeys | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # never print the secrets
        jwks = f", JWKS {self.platform_keys.url}" if self.platform_keys else ""
        return f"AuthConfig({len(self.token_secrets)} token secrets, {len(self.service_keys)} service keys{jwks})"

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        """The configuration of `settings`; ValueError for a malformed service key or JWKS setting."""
        audience = settings.jwt_audience or None
        platform_keys = None
        if settings.jwks_url:
            _check_jwks_url(settings.jwks_url)
            if audience is None:
                raise ValueError(
                    "KEYSCOPE_JWKS_URL needs KEYSCOPE_JWT_AUDIENCE: the identity provider signs tokens for other "
                    "services too, and only those naming keyscope's audience may be accepted"
                )
            platform_keys = PlatformKeys(settings.jwks_url)
        return cls(
            token_secrets=tuple(s.encode() for s in settings.token_secrets),
            service_keys=tuple(parse_service_key(entry) for entry in settings.service_keys),
            audience=audience,
            issuer=settings.jwt_issuer or None,
            user_claim=settings.jwt_user_claim or "sub",
            platform_keys=platform_keys,
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


def _is_user_id(user_id: object) -> bool:
    return isinstance(user_id, int) and not isinstance(user_id, bool) and 1 <= user_id <= MAX_USER_ID


def issue_token(
    secret: str | bytes,
    scope: Scope,
    user_id: int | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
    *,
    audience: str | None = None,
) -> str:
    """An HS256 JWT for a user (needs `user_id`) or an admin, valid for `ttl_s` seconds from `now`, naming
    `audience` as `aud` when given (pass `Settings.jwt_audience` where it is set)."""
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
    claims: dict[str, Any] = {"sub": str(user_id)} if user_id is not None else {}
    claims.update(scope=scope, iat=issued, exp=issued + int(ttl_s))
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=SECRET_ALGORITHM)


def issue_token_from_settings(
    settings: Settings, scope: Scope, user_id: int | None = None, ttl_s: int | None = None, now: float | None = None
) -> str:
    """`issue_token` with what `settings` configures: the first token secret, the audience, the scope's lifetime."""
    if not settings.token_secrets:
        raise ValueError("no token secret configured")
    ttl = ttl_s if ttl_s is not None else settings.admin_token_ttl_s if scope == "admin" else settings.user_token_ttl_s
    return issue_token(settings.token_secrets[0], scope, user_id, ttl, now, audience=settings.jwt_audience or None)


def _malformed(what: str) -> AuthError:
    return AuthError(401, "malformed_credentials", what)


def _invalid(what: str) -> AuthError:
    return AuthError(401, "invalid_credentials", what)


def _refusal(exc: jwt.PyJWTError) -> AuthError:
    """The AuthError for a PyJWT rejection, worded for the caller (PyJWT's own text never leaves)."""
    if isinstance(exc, jwt.InvalidSignatureError):  # before DecodeError, its base class
        return _invalid("the token's signature does not verify")
    if isinstance(exc, jwt.InvalidAudienceError) or (
        isinstance(exc, jwt.MissingRequiredClaimError) and exc.claim == "aud"
    ):
        return _invalid("wrong audience: the token is not meant for keyscope (aud)")
    if isinstance(exc, jwt.InvalidIssuerError) or (
        isinstance(exc, jwt.MissingRequiredClaimError) and exc.claim == "iss"
    ):
        return _invalid("wrong issuer: the token is not from the configured identity provider (iss)")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return _malformed(f"the token has no {exc.claim!r} claim")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return _invalid("the token's algorithm does not match its key")
    if isinstance(exc, jwt.DecodeError):
        return _malformed("the token is not a well-formed JWT")
    return _malformed("the token's claims are malformed")


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_times(claims: dict[str, Any], now: float) -> None:
    iat, exp, nbf = claims.get("iat"), claims.get("exp"), claims.get("nbf")
    if not (_is_time(iat) and _is_time(exp)) or (nbf is not None and not _is_time(nbf)):
        raise _malformed("the token needs numeric iat and exp")
    if now >= exp:
        raise AuthError(401, "token_expired", "the token has expired; ask for a new one")
    if iat > now + CLOCK_SKEW_S:
        raise _invalid("the token was issued in the future")
    if nbf is not None and nbf > now + CLOCK_SKEW_S:
        raise _invalid("the token is not valid yet (nbf)")


def _user_principal(value: object, claim: str) -> Principal:
    """The user named by a token's `claim`: an integer, or its decimal digits (JWT subjects are strings)."""
    uid: object = None
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        uid = int(value) if value == str(int(value)) else None  # "042" is not a user id
    elif isinstance(value, int) and not isinstance(value, bool):
        uid = value
    if not _is_user_id(uid):
        raise _malformed(f"a user token needs a positive integer user id in its {claim!r} claim")
    return Principal("user", uid, f"user:{uid}")  # type: ignore[arg-type]


def _verify_secret_token(credential: str, config: AuthConfig, now: float) -> Principal:
    """A keyscope token: HS256 under one of the token secrets."""
    if not config.token_secrets:
        raise _invalid("tokens are not accepted: no token secret is configured")
    claims: dict[str, Any] | None = None
    for secret in config.token_secrets:
        try:
            claims = jwt.decode(
                credential, secret, algorithms=[SECRET_ALGORITHM], audience=config.audience, options=_DECODE_OPTIONS
            )
            break
        except jwt.InvalidSignatureError:
            continue  # perhaps signed with an older secret still in rotation
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
    if claims is None:
        raise _invalid("the token's signature does not verify")
    _check_times(claims, now)
    scope = claims.get("scope")
    if scope == "admin":
        return Principal("admin", None, "admin")
    if scope == "user":
        return _user_principal(claims.get("sub"), "sub")
    raise _malformed("the token's scope is neither 'user' nor 'admin'")


def _verify_platform_token(credential: str, header: dict[str, Any], config: AuthConfig, now: float) -> Principal:
    """A platform token: RS256/ES256 under the JWKS key its `kid` names, always a user."""
    alg = header["alg"]
    if config.platform_keys is None:
        raise _invalid(f"{alg} tokens are not accepted: no JWKS URL is configured")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _malformed(f"an {alg} token must name its signing key (kid)")
    key = config.platform_keys.signing_key(kid)
    # The key decides the algorithm: an RSA key verifies only RS256, an EC P-256 key only ES256, nothing else.
    if key.algorithm_name not in JWKS_ALGORITHMS or key.algorithm_name != alg:
        raise _invalid("the token's algorithm does not match its key")
    try:
        claims = jwt.decode(
            credential,
            key,
            algorithms=[key.algorithm_name],
            audience=config.audience,
            issuer=config.issuer,
            options=_DECODE_OPTIONS,
        )
    except jwt.PyJWTError as exc:
        raise _refusal(exc) from None
    _check_times(claims, now)
    return _user_principal(claims.get(config.user_claim), config.user_claim)


def _verify_token(credential: str, config: AuthConfig, now: float) -> Principal:
    try:
        header = jwt.get_unverified_header(credential)
    except jwt.PyJWTError:
        raise _malformed("the credential is not a keyscope token (a JWT) or service key") from None
    alg = header.get("alg")
    if alg == SECRET_ALGORITHM:
        return _verify_secret_token(credential, config, now)
    if alg in JWKS_ALGORITHMS:
        return _verify_platform_token(credential, header, config, now)
    if isinstance(alg, str) and alg.lower() == "none":
        raise _invalid("unsigned tokens (alg none) are not accepted")
    raise _invalid(f"the token's algorithm is not accepted (only {SECRET_ALGORITHM}, {', '.join(JWKS_ALGORITHMS)})")


def _verify_service_key(credential: str, config: AuthConfig) -> Principal:
    key = credential.encode()
    matched: str | None = None
    for name, expected in config.service_keys:  # constant time per key, and no early exit
        if hmac.compare_digest(key, expected):
            matched = name
    if matched is None:
        raise _invalid("unknown service key")
    return Principal("service", None, f"service:{matched}")


def authenticate(authorization_header: str | None, config: AuthConfig, now: float | None = None) -> Principal:
    """The Principal of an `Authorization` header's bearer credential; AuthError(401) when there is none valid,
    AuthError(503) when a platform token's keys cannot be fetched."""
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
    if credential.count(".") == 2:
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
