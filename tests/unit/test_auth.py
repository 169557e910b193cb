"""Bearer credentials: JWT tokens and service keys, who may read what, secret rotation, platform tokens from a JWKS,
local secrets, `keyscope token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth import (
    ADMIN_SCOPES,
    JWKS_RETRY_S,
    SUBMIT_SCOPES,
    AuthConfig,
    AuthError,
    Principal,
    authenticate,
    authorize_user,
    ensure_local_secrets,
    issue_token,
    issue_token_from_settings,
    new_service_key,
    require_scope,
    settings_with_local_secrets,
)
from app.config import Settings
from cli.main import main

NOW = 1_750_000_000.0
# HS256 secrets of at least 32 bytes, as `keyscope up` generates (PyJWT warns about shorter ones).
SECRET = "s3cret-one-s3cret-one-s3cret-one"
OLD_SECRET = "old-secret-old-secret-old-secret"
NEW_SECRET = "new-secret-new-secret-new-secret"
SERVICE_KEY = "ksk_" + "A" * 43
BARE_KEY = "ksk_" + "b" * 43


def config(secrets: tuple[str, ...] = (SECRET,), keys: tuple[str, ...] = (f"typeracer:{SERVICE_KEY}",)) -> AuthConfig:
    return AuthConfig.from_settings(Settings(token_secrets=secrets, service_keys=keys))


def bearer(credential: str) -> str:
    return f"Bearer {credential}"


def refused(header: str | None, cfg: AuthConfig | None = None, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as caught:
        authenticate(header, cfg or config(), now)
    return caught.value


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hs256(header: dict[str, Any], claims: object, key: bytes) -> str:
    """A JWT signed by hand, as a buggy issuer or an attacker would, with no library refusing the key or claims."""
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


def user_claims(user_id: str = "42", **extra: object) -> dict[str, object]:
    return {"sub": user_id, "scope": "user", "iat": int(NOW), "exp": int(NOW) + 3600, **extra}


# tokens ---------------------------------------------------------------------------------------------------------


def test_user_token_round_trip_carries_the_user_and_its_format_is_documented():
    token = issue_token(SECRET, "user", user_id=42, ttl_s=600, now=NOW)
    header, payload, signature = token.split(".")
    assert json.loads(unb64(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(unb64(payload)) == {"sub": "42", "scope": "user", "iat": int(NOW), "exp": int(NOW) + 600}
    assert len(unb64(signature)) == 32  # HMAC-SHA256
    assert authenticate(bearer(token), config(), NOW + 599) == Principal("user", 42, "user:42")


def test_admin_token_round_trip():
    token = issue_token(SECRET, "admin", ttl_s=60, now=NOW)
    assert "sub" not in jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert authenticate(bearer(token), config(), NOW) == Principal("admin", None, "admin")


def test_a_jwt_from_any_library_holding_the_shared_secret_is_accepted():
    # A platform's backend may mint its users' tokens itself, with PyJWT or any other JWT library.
    token = jwt.encode(user_claims("7"), SECRET, algorithm="HS256", headers={"kid": "ignored-for-hs256"})
    assert authenticate(bearer(token), config(), NOW) == Principal("user", 7, "user:7")
    admin = jwt.encode({"scope": "admin", "iat": int(NOW), "exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    assert authenticate(bearer(admin), config(), NOW).scope == "admin"


def test_the_bearer_scheme_is_case_insensitive_and_whitespace_tolerant():
    token = issue_token(SECRET, "user", user_id=7, now=NOW)
    assert authenticate(f"  bearer   {token}  ", config(), NOW).user_id == 7


def test_an_expired_token_is_refused_with_401():
    token = issue_token(SECRET, "user", user_id=42, ttl_s=600, now=NOW)
    error = refused(bearer(token), now=NOW + 600)
    assert (error.status, error.code) == (401, "token_expired")
    assert error.headers()["WWW-Authenticate"] == 'Bearer realm="keyscope", error="invalid_token"'


def test_a_token_issued_in_the_future_is_refused_beyond_the_clock_skew():
    token = issue_token(SECRET, "user", user_id=42, ttl_s=3600, now=NOW + 3000)
    assert authenticate(bearer(issue_token(SECRET, "user", user_id=42, now=NOW + 30)), config(), NOW).user_id == 42
    assert refused(bearer(token)).status == 401
    not_yet = jwt.encode(user_claims(nbf=int(NOW) + 600), SECRET, algorithm="HS256")
    assert refused(bearer(not_yet)).status == 401


def test_a_token_signed_with_another_secret_is_refused():
    token = issue_token("not-our-secret-not-our-secret-xx", "admin", now=NOW)
    error = refused(bearer(token))
    assert (error.status, error.code) == (401, "invalid_credentials")
    assert "signature" in error.message


def test_a_tampered_payload_is_refused():
    header, payload, signature = issue_token(SECRET, "user", user_id=42, now=NOW).split(".")
    for claims in (
        user_claims("43"),  # another user
        {"scope": "admin", "iat": int(NOW), "exp": int(NOW) + 3600},  # escalation
        user_claims(exp=int(NOW) + 10**9),  # extended lifetime
    ):
        forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
        assert refused(bearer(forged)).code == "invalid_credentials"
    # One flipped bit of the signature.
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    assert refused(bearer(f"{header}.{payload}.{b64(bytes(raw))}")).code == "invalid_credentials"


def test_a_validly_signed_but_nonsensical_payload_is_refused():
    exp = int(NOW) + 60
    for claims in (
        {"scope": "service", "iat": int(NOW), "exp": exp},
        {"scope": "user", "iat": int(NOW), "exp": exp},  # no sub
        {"scope": "user", "sub": 42, "iat": int(NOW), "exp": exp},  # a JWT subject is a string
        {"scope": "user", "sub": True, "iat": int(NOW), "exp": exp},
        {"scope": "user", "sub": "0", "iat": int(NOW), "exp": exp},
        {"scope": "user", "sub": "-1", "iat": int(NOW), "exp": exp},
        {"scope": "user", "sub": "042", "iat": int(NOW), "exp": exp},
        {"scope": "user", "sub": "4" * 40, "iat": int(NOW), "exp": exp},
        {"scope": "user", "sub": "alice", "iat": int(NOW), "exp": exp},
        {"scope": "admin", "iat": int(NOW)},  # no exp: tokens never live forever
        {"scope": "admin", "exp": exp},  # no iat
        {"scope": "admin", "iat": int(NOW), "exp": "never"},
        {"scope": "admin", "iat": True, "exp": exp},
        ["admin"],
        "admin",
    ):
        # Signed with the real secret, as a buggy or older issuer would.
        error = refused(bearer(hs256({"alg": "HS256", "typ": "JWT"}, claims, SECRET.encode())))
        assert error.status == 401, claims
        assert error.code in ("malformed_credentials", "invalid_credentials"), claims


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "Bearer eyJhbGciOiJIUzI1NiJ9.onlytwo",
        "Bearer a.b.c.d",
        "Bearer !!!.@@@.###",
        "Bearer ..",
        "Bearer kst1.a.b",  # the retired home-made format
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",  # a JWT whose signature is junk
        "Bearer W10.e30.sig",  # a header that is not an object
        "Bearer " + b64(b'{"alg":"HS256"}') + "." + "A" * 9000 + ".x",
        "Bearer é.é.é",
    ],
)
def test_malformed_credentials_are_refused_with_401(header):
    error = refused(header)
    assert error.status == 401
    assert error.code in ("malformed_credentials", "invalid_credentials")


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_credential_is_refused_with_401_and_a_bare_challenge(header):
    error = refused(header)
    assert (error.status, error.code) == (401, "missing_credentials")
    assert error.headers() == {"WWW-Authenticate": 'Bearer realm="keyscope"'}
    assert error.body()["error"] == "missing_credentials"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_alg_none_is_refused(alg):
    admin = {"scope": "admin", "iat": int(NOW), "exp": int(NOW) + 60}
    unsigned = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(admin).encode())}."
    for cfg in (config(), config(secrets=())):
        error = refused(bearer(unsigned), cfg)
        assert (error.status, error.code) == (401, "invalid_credentials")
        assert "alg none" in error.message


def test_algorithms_other_than_hs256_are_refused_with_the_shared_secret():
    for alg in ("HS384", "HS512"):
        token = jwt.encode(user_claims(), SECRET + "-longer-for-hs512-" * 3, algorithm=alg)
        assert refused(bearer(token)).code == "invalid_credentials", alg
    # An asymmetric token needs a JWKS; without one it is refused, and nothing is fetched.
    private = ec.generate_private_key(ec.SECP256R1())
    es256 = jwt.encode(user_claims(), private, algorithm="ES256", headers={"kid": "k1"})
    error = refused(bearer(es256))
    assert (error.status, error.code) == (401, "invalid_credentials")
    assert "no JWKS URL" in error.message


def test_the_configured_audience_is_required_on_keyscope_tokens_and_issued_into_them():
    cfg = AuthConfig.from_settings(Settings(token_secrets=(SECRET,), jwt_audience="https://keyscope.example"))
    good = issue_token(SECRET, "user", user_id=5, now=NOW, audience="https://keyscope.example")
    assert authenticate(bearer(good), cfg, NOW).user_id == 5
    for token in (
        issue_token(SECRET, "user", user_id=5, now=NOW),  # no aud
        issue_token(SECRET, "user", user_id=5, now=NOW, audience="https://other.example"),
    ):
        error = refused(bearer(token), cfg)
        assert (error.status, error.code) == (401, "invalid_credentials")
        assert "audience" in error.message
    # A token for some audience is not for a keyscope that names none.
    assert "audience" in refused(bearer(good)).message
    # issue_token_from_settings fills in the secret, the audience and each scope's lifetime.
    settings = Settings(token_secrets=(SECRET,), jwt_audience="https://keyscope.example", admin_token_ttl_s=120)
    admin = issue_token_from_settings(settings, "admin", now=NOW)
    assert authenticate(bearer(admin), cfg, NOW + 119).scope == "admin"
    assert refused(bearer(admin), cfg, NOW + 120).code == "token_expired"
    user = jwt.decode(
        issue_token_from_settings(settings, "user", user_id=8, now=NOW),
        SECRET,
        algorithms=["HS256"],
        audience="https://keyscope.example",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert user["exp"] - user["iat"] == settings.user_token_ttl_s
    with pytest.raises(ValueError):
        issue_token_from_settings(Settings(), "admin")


def test_no_token_is_accepted_when_no_secret_is_configured():
    token = issue_token(SECRET, "admin", now=NOW)
    assert refused(bearer(token), config(secrets=())).status == 401
    with pytest.raises(ValueError):
        issue_token("", "admin", now=NOW)


def test_issue_token_refuses_what_it_cannot_sign_meaningfully():
    for kwargs in (
        {"scope": "user"},
        {"scope": "user", "user_id": 0},
        {"scope": "user", "user_id": True},
        {"scope": "admin", "user_id": 4},
        {"scope": "service"},
        {"scope": "user", "user_id": 4, "ttl_s": 0},
    ):
        with pytest.raises(ValueError):
            issue_token(SECRET, now=NOW, **kwargs)  # type: ignore[arg-type]


# rotation ------------------------------------------------------------------------------------------------------


def test_rotation_the_first_secret_signs_and_every_secret_verifies():
    old_token = issue_token(OLD_SECRET, "user", user_id=5, now=NOW)
    new_token = issue_token(NEW_SECRET, "user", user_id=5, now=NOW)
    rotating = config(secrets=(NEW_SECRET, OLD_SECRET))
    assert authenticate(bearer(old_token), rotating, NOW).user_id == 5
    assert authenticate(bearer(new_token), rotating, NOW).user_id == 5
    # An expired token under the old secret says so, rather than "bad signature".
    assert refused(bearer(old_token), rotating, NOW + 3600).code == "token_expired"
    # Once the old secret is dropped its tokens stop working.
    assert refused(bearer(old_token), config(secrets=(NEW_SECRET,))).code == "invalid_credentials"


# platform tokens from a JWKS -----------------------------------------------------------------------------------

AUDIENCE = "https://keyscope.typeracer.example"
ISSUER = "https://id.typeracer.example/"


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 (an ephemeral port) that counts its fetches; `body` is what it serves."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Platform:
    """A typing platform's identity provider: an RSA and an EC P-256 signing key, published as a JWKS."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, key, algorithm in (("rsa-1", self.rsa, jwt.algorithms.RSAAlgorithm), ("ec-1", self.ec, None)):
            if algorithm is None:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            else:
                jwk = json.loads(algorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        self.jwks = {"keys": keys}

    def token(self, kid: str = "rsa-1", alg: str | None = None, key: Any = None, **overrides: object) -> str:
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "42",
            "iat": int(NOW),
            "exp": int(NOW) + 600,
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        alg = alg or ("ES256" if kid.startswith("ec") else "RS256")
        key = key or (self.ec if alg == "ES256" else self.rsa)
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def platform() -> Platform:
    return Platform()


@pytest.fixture
def jwks(platform: Platform) -> Iterator[JwksServer]:
    server = JwksServer(json.dumps(platform.jwks).encode())
    yield server
    server.stop()


def platform_config(url: str, **settings: Any) -> AuthConfig:
    return AuthConfig.from_settings(
        Settings(
            token_secrets=(SECRET,),
            service_keys=(f"typeracer:{SERVICE_KEY}",),
            jwks_url=url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            **settings,
        )
    )


def test_rs256_and_es256_platform_tokens_verify_against_the_jwks_fetched_once(platform, jwks):
    cfg = platform_config(jwks.url)
    for kid in ("rsa-1", "ec-1"):
        assert authenticate(bearer(platform.token(kid)), cfg, NOW) == Principal("user", 42, "user:42")
    assert jwks.fetches == 1  # cached
    # Keyscope's own tokens and service keys never touch the JWKS.
    fresh = platform_config(jwks.url)
    token = issue_token(SECRET, "admin", now=NOW, audience=AUDIENCE)
    assert authenticate(bearer(token), fresh, NOW).scope == "admin"
    assert authenticate(bearer(SERVICE_KEY), fresh, NOW).scope == "service"
    assert jwks.fetches == 1


def test_a_platform_token_is_a_user_token_whatever_scope_it_claims(platform, jwks):
    cfg = platform_config(jwks.url)
    for scope in ("admin", "service", "admin user"):
        assert authenticate(bearer(platform.token(scope=scope)), cfg, NOW) == Principal("user", 42, "user:42")
    assert refused(bearer(platform.token(sub=None, scope="admin")), cfg).code == "malformed_credentials"


def test_the_user_id_claim_is_configurable(platform, jwks):
    cfg = platform_config(jwks.url, jwt_user_claim="typeracer_uid")
    for uid in (42, "42"):
        token = platform.token(sub="auth0|5f1e", typeracer_uid=uid)
        assert authenticate(bearer(token), cfg, NOW).user_id == 42
    error = refused(bearer(platform.token()), cfg)  # only a sub
    assert error.code == "malformed_credentials" and "typeracer_uid" in error.message


def test_platform_tokens_with_a_wrong_kid_audience_issuer_or_lifetime_are_refused(platform, jwks):
    cfg = platform_config(jwks.url)
    cases = {
        "unknown key id": platform.token(kid="rsa-2"),
        "audience": platform.token(aud="https://another-service.example"),
        "issuer": platform.token(iss="https://evil.example/"),
    }
    for reason, token in cases.items():
        error = refused(bearer(token), cfg)
        assert (error.status, error.code) == (401, "invalid_credentials"), reason
        assert reason in error.message
    assert "audience" in refused(bearer(platform.token(aud=None)), cfg).message
    assert "issuer" in refused(bearer(platform.token(iss=None)), cfg).message
    assert refused(bearer(platform.token()), cfg, NOW + 600).code == "token_expired"
    assert refused(bearer(platform.token(exp=None)), cfg).status == 401
    # The kid names a key; the header must name one.
    no_kid = jwt.encode({"sub": "42", "aud": AUDIENCE, "iss": ISSUER}, platform.rsa, algorithm="RS256")
    assert refused(bearer(no_kid), cfg).code == "malformed_credentials"


def test_a_platform_token_signed_by_another_key_under_a_known_kid_is_refused(platform, jwks):
    cfg = platform_config(jwks.url)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = refused(bearer(platform.token("rsa-1", key=impostor)), cfg)
    assert (error.code, error.message) == ("invalid_credentials", "the token's signature does not verify")
    # The RSA key signs, but the kid names the EC key: the key's algorithm decides, and it does not match.
    assert refused(bearer(platform.token("ec-1", alg="RS256")), cfg).code == "invalid_credentials"


def test_hs256_signed_with_the_platforms_public_key_is_refused(platform, jwks):
    # The algorithm-confusion attack: the public key is public, so an HMAC under it proves nothing.
    cfg = platform_config(jwks.url)
    pem = platform.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = json.dumps(platform.jwks["keys"][0]).encode()
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "42", "scope": "admin", "iat": int(NOW), "exp": int(NOW) + 60}
    for key in (pem, jwk):
        forged = hs256({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims, key)
        error = refused(bearer(forged), cfg)
        assert (error.status, error.code) == (401, "invalid_credentials")
    assert jwks.fetches == 0


def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_cooldown(platform, jwks):
    cfg = platform_config(jwks.url)
    for n in range(5):  # attacker-chosen kids must not turn into one fetch each
        assert refused(bearer(platform.token(kid=f"made-up-{n}")), cfg).status == 401
    assert jwks.fetches == 1


def test_an_unreachable_or_broken_jwks_is_a_clear_503_not_a_crash(platform):
    down = JwksServer(b"")
    down.stop()  # nothing listens on its port now
    cfg = platform_config(down.url)
    started = time.monotonic()
    error = refused(bearer(platform.token()), cfg)
    assert (error.status, error.code) == (503, "auth_unavailable")
    assert error.headers() == {"Retry-After": str(JWKS_RETRY_S)}
    assert down.url not in error.message
    # Within the back-off the next platform token is refused at once; other credentials still work.
    assert refused(bearer(platform.token()), cfg).status == 503
    assert time.monotonic() - started < JWKS_RETRY_S
    assert authenticate(bearer(SERVICE_KEY), cfg, NOW).scope == "service"
    for body in (b"<html>not json</html>", b'{"keys": []}', b'["a list"]', b'{"keys": [{"kty": "RSA"}]}'):
        broken = JwksServer(body)
        try:
            assert refused(bearer(platform.token()), platform_config(broken.url)).status == 503, body
        finally:
            broken.stop()


def test_a_jwks_url_needs_an_audience_and_https_off_loopback():
    with pytest.raises(ValueError, match="KEYSCOPE_JWT_AUDIENCE"):
        AuthConfig.from_settings(Settings(jwks_url="https://id.typeracer.example/jwks.json"))
    with pytest.raises(ValueError, match="https"):
        AuthConfig.from_settings(Settings(jwks_url="http://id.typeracer.example/jwks.json", jwt_audience=AUDIENCE))
    for url in ("https://id.typeracer.example/jwks.json", "http://127.0.0.1:9/jwks.json"):
        assert AuthConfig.from_settings(Settings(jwks_url=url, jwt_audience=AUDIENCE)).platform_keys is not None


def test_the_jwt_settings_come_from_the_environment_and_reach_child_processes(tmp_path):
    settings = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path),
            "KEYSCOPE_JWKS_URL": "https://id.typeracer.example/jwks.json",
            "KEYSCOPE_JWT_ISSUER": ISSUER,
            "KEYSCOPE_JWT_AUDIENCE": AUDIENCE,
            "KEYSCOPE_JWT_USER_CLAIM": "typeracer_uid",
        }
    )
    assert (settings.jwks_url, settings.jwt_issuer, settings.jwt_audience, settings.jwt_user_claim) == (
        "https://id.typeracer.example/jwks.json",
        ISSUER,
        AUDIENCE,
        "typeracer_uid",
    )
    assert Settings.from_env(settings.as_env()) == settings
    defaults = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_JWT_USER_CLAIM": ""})
    assert (defaults.jwks_url, defaults.jwt_audience, defaults.jwt_user_claim) == ("", "", "sub")


# service keys --------------------------------------------------------------------------------------------------


def test_a_configured_service_key_authenticates_under_its_name():
    assert authenticate(bearer(SERVICE_KEY), config(), NOW) == Principal("service", None, "service:typeracer")


def test_an_unnamed_service_key_gets_a_name_that_does_not_reveal_it():
    principal = authenticate(bearer(BARE_KEY), config(keys=(BARE_KEY,)), NOW)
    assert principal.scope == "service"
    assert principal.name.startswith("service:key-")
    assert BARE_KEY[4:12] not in principal.name


def test_an_unknown_or_truncated_service_key_is_refused():
    for credential in (BARE_KEY, SERVICE_KEY[:-1], SERVICE_KEY + "A", "ksk_"):
        error = refused(bearer(credential))
        assert (error.status, error.code) == (401, "invalid_credentials"), credential


def test_several_service_keys_each_authenticate():
    cfg = config(keys=(f"a:{SERVICE_KEY}", f"b:{BARE_KEY}"))
    assert authenticate(bearer(SERVICE_KEY), cfg, NOW).name == "service:a"
    assert authenticate(bearer(BARE_KEY), cfg, NOW).name == "service:b"


def test_a_misconfigured_service_key_fails_at_start_up():
    with pytest.raises(ValueError):
        config(keys=("platform:not-a-key",))


def test_new_service_keys_are_random_and_well_formed():
    first, second = new_service_key(), new_service_key()
    assert first != second
    assert first.startswith("ksk_") and len(first) == 4 + 43
    assert authenticate(bearer(first), config(keys=(first,)), NOW).scope == "service"


# authorization -------------------------------------------------------------------------------------------------

USER_A = Principal("user", 1, "user:1")
USER_B = Principal("user", 2, "user:2")
SERVICE = Principal("service", None, "service:typeracer")
ADMIN = Principal("admin", None, "admin")


def test_a_user_reads_only_its_own_data():
    authorize_user(USER_A, 1)
    with pytest.raises(AuthError) as caught:
        authorize_user(USER_A, 2)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    with pytest.raises(AuthError):
        authorize_user(USER_B, 1)


def test_service_and_admin_read_any_users_data():
    for principal in (SERVICE, ADMIN):
        authorize_user(principal, 1)
        authorize_user(principal, 2**63 - 1)


def test_everyone_submits_a_user_only_their_own_tests_and_only_admin_administers():
    for principal in (SERVICE, ADMIN, USER_A):
        require_scope(principal, *SUBMIT_SCOPES)
    authorize_user(USER_A, USER_A.user_id)  # the check a submission of USER_A's own test passes
    require_scope(ADMIN, *ADMIN_SCOPES)
    for principal, scopes in ((USER_A, ADMIN_SCOPES), (SERVICE, ADMIN_SCOPES)):
        with pytest.raises(AuthError) as caught:
            require_scope(principal, *scopes)
        assert (caught.value.status, caught.value.code) == (403, "insufficient_scope")
        assert "insufficient_scope" in caught.value.headers()["WWW-Authenticate"]


# secrets never printed -----------------------------------------------------------------------------------------


def test_secrets_never_appear_in_describe_repr_or_the_auth_config():
    settings = Settings(token_secrets=(SECRET, "second-secret"), service_keys=(f"typeracer:{SERVICE_KEY}",))
    shown = json.dumps(settings.describe()) + repr(settings) + repr(AuthConfig.from_settings(settings))
    for secret in (SECRET, "second-secret", SERVICE_KEY):
        assert secret not in shown
    assert settings.describe()["token_secrets"] == "<2 secrets>"
    assert settings.describe()["service_keys"] == "<1 keys>"


# local secrets -------------------------------------------------------------------------------------------------


def test_local_secrets_are_generated_once_private_and_reused(tmp_path):
    first = ensure_local_secrets(tmp_path)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first["token_secrets"]) == 1 and len(first["token_secrets"][0]) >= 43
    assert first["service_keys"][0].startswith("local:ksk_")
    assert ensure_local_secrets(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]  # no temporary file left behind
    # Settings of any process pointed at this data directory read them.
    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path)})
    assert settings.token_secrets == tuple(first["token_secrets"])
    assert settings.service_keys == tuple(first["service_keys"])


def test_settings_with_local_secrets_keeps_configured_values_and_fills_the_rest(tmp_path):
    configured = Settings(data_dir=tmp_path, token_secrets=("mine",))
    filled = settings_with_local_secrets(configured)
    assert filled.token_secrets == ("mine",)
    assert filled.service_keys == tuple(ensure_local_secrets(tmp_path)["service_keys"])
    complete = Settings(data_dir=tmp_path / "elsewhere", token_secrets=("a",), service_keys=(SERVICE_KEY,))
    assert settings_with_local_secrets(complete) is complete
    assert not (tmp_path / "elsewhere").exists()


def test_the_stack_puts_the_secrets_into_the_ray_heads_environment_before_starting_it(tmp_path, monkeypatch):
    from devstack.stack import LocalStack

    stack = LocalStack(Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path)}))
    assert stack.settings.token_secrets == ()
    seen: dict[str, str] = {}
    for step in ("start_broker", "start_clickhouse", "start_redis"):
        monkeypatch.setattr(stack, step, lambda state: None)
    monkeypatch.setattr(stack, "start_ray", lambda state: seen.update(stack.ray_env()))
    monkeypatch.setattr(stack, "prepare_data", lambda: None)
    monkeypatch.setattr(stack, "status", lambda: [])
    stack.up(with_serve=False)
    stored = ensure_local_secrets(tmp_path)
    assert seen["KEYSCOPE_TOKEN_SECRETS"] == ",".join(stored["token_secrets"])
    assert seen["KEYSCOPE_SERVICE_KEYS"] == ",".join(stored["service_keys"])
    # What a Serve replica builds from that environment verifies what `keyscope token` issues.
    replica = AuthConfig.from_settings(Settings.from_env(seen))
    token = issue_token(stored["token_secrets"][0], "user", user_id=3)
    assert authenticate(bearer(token), replica).user_id == 3


# keyscope token ------------------------------------------------------------------------------------------------


@pytest.fixture
def local_data_dir(tmp_path, monkeypatch) -> Path:
    ensure_local_secrets(tmp_path)
    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYSCOPE_TOKEN_SECRETS", raising=False)
    monkeypatch.delenv("KEYSCOPE_SERVICE_KEYS", raising=False)
    return tmp_path


def run_token(capsys, *argv: str) -> str:
    assert main(["token", *argv]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # only the credential, so `TOKEN=$(keyscope token …)` works
    return out.strip()


def test_keyscope_token_prints_credentials_the_stack_accepts(local_data_dir, capsys):
    cfg = AuthConfig.from_settings(Settings.from_env({"KEYSCOPE_DATA_DIR": str(local_data_dir)}))
    user = authenticate(bearer(run_token(capsys, "--user", "42")), cfg)
    assert user == Principal("user", 42, "user:42")
    assert authenticate(bearer(run_token(capsys, "--admin")), cfg).scope == "admin"
    assert authenticate(bearer(run_token(capsys, "--service")), cfg) == Principal("service", None, "service:local")


def test_keyscope_token_ttl_sets_the_lifetime(local_data_dir, capsys):
    cfg = AuthConfig.from_settings(Settings.from_env({"KEYSCOPE_DATA_DIR": str(local_data_dir)}))
    token = run_token(capsys, "--user", "42", "--ttl", "5")
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["exp"] - payload["iat"] == 5
    assert authenticate(bearer(token), cfg, payload["iat"] + 4).user_id == 42
    with pytest.raises(AuthError):
        authenticate(bearer(token), cfg, payload["iat"] + 5)
    default = json.loads(base64.urlsafe_b64decode(run_token(capsys, "--user", "1").split(".")[1] + "=="))
    assert default["exp"] - default["iat"] == 3600


def test_keyscope_token_fails_clearly_without_secrets_or_with_bad_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYSCOPE_TOKEN_SECRETS", raising=False)
    monkeypatch.delenv("KEYSCOPE_SERVICE_KEYS", raising=False)
    assert main(["token", "--admin"]) == 1
    assert "keyscope up" in capsys.readouterr().err
    ensure_local_secrets(tmp_path)
    assert main(["token", "--service", "--ttl", "5"]) == 1
    assert main(["token", "--user", "0"]) == 1
    with pytest.raises(SystemExit):
        main(["token", "--user", "1", "--admin"])


def test_keyscope_token_as_a_command(tmp_path):
    secrets = ensure_local_secrets(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSCOPE_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "--user", "9"],
        env={**env, "KEYSCOPE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    cfg = AuthConfig(token_secrets=(secrets["token_secrets"][0].encode(),), service_keys=())
    assert authenticate(bearer(result.stdout.strip()), cfg).user_id == 9
