"""Bearer credentials: tokens and service keys, who may read what, key rotation, local secrets, `keyscope token`."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth import (
    ADMIN_SCOPES,
    SUBMIT_SCOPES,
    AuthConfig,
    AuthError,
    Principal,
    authenticate,
    authorize_user,
    ensure_local_secrets,
    issue_token,
    new_service_key,
    require_scope,
    settings_with_local_secrets,
)
from app.config import Settings
from cli.main import main

NOW = 1_750_000_000.0
SECRET = "s3cret-one"
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


# tokens ---------------------------------------------------------------------------------------------------------


def test_user_token_round_trip_carries_the_user_and_its_format_is_documented():
    token = issue_token(SECRET, "user", user_id=42, ttl_s=600, now=NOW)
    prefix, payload, signature = token.split(".")
    assert prefix == "kst1"
    assert json.loads(base64.urlsafe_b64decode(payload + "==")) == {
        "scope": "user",
        "uid": 42,
        "iat": int(NOW),
        "exp": int(NOW) + 600,
    }
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32  # HMAC-SHA256
    assert authenticate(bearer(token), config(), NOW + 599) == Principal("user", 42, "user:42")


def test_admin_token_round_trip():
    token = issue_token(SECRET, "admin", ttl_s=60, now=NOW)
    assert authenticate(bearer(token), config(), NOW) == Principal("admin", None, "admin")


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


def test_a_token_signed_with_another_secret_is_refused():
    token = issue_token("not-our-secret", "admin", now=NOW)
    error = refused(bearer(token))
    assert (error.status, error.code) == (401, "invalid_credentials")


def test_a_tampered_payload_is_refused():
    prefix, payload, signature = issue_token(SECRET, "user", user_id=42, now=NOW).split(".")
    for claims in (
        {"scope": "user", "uid": 43, "iat": int(NOW), "exp": int(NOW) + 3600},  # another user
        {"scope": "admin", "iat": int(NOW), "exp": int(NOW) + 3600},  # escalation
        {"scope": "user", "uid": 42, "iat": int(NOW), "exp": int(NOW) + 10**9},  # extended lifetime
    ):
        forged = f"{prefix}.{b64(json.dumps(claims).encode())}.{signature}"
        assert refused(bearer(forged)).code == "invalid_credentials"
    # One flipped bit of the signature.
    raw = bytearray(base64.urlsafe_b64decode(signature + "="))
    raw[0] ^= 1
    assert refused(bearer(f"{prefix}.{payload}.{b64(bytes(raw))}")).code == "invalid_credentials"


def test_a_validly_signed_but_nonsensical_payload_is_refused():
    def signed(claims: object) -> str:
        # Sign with the real secret through the module's own primitive, as a buggy or older issuer would.
        import hashlib
        import hmac

        body = f"kst1.{b64(json.dumps(claims).encode())}"
        return f"{body}.{b64(hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest())}"

    exp = int(NOW) + 60
    for claims in (
        {"scope": "service", "iat": int(NOW), "exp": exp},
        {"scope": "user", "iat": int(NOW), "exp": exp},  # no uid
        {"scope": "user", "uid": "42", "iat": int(NOW), "exp": exp},
        {"scope": "user", "uid": True, "iat": int(NOW), "exp": exp},
        {"scope": "user", "uid": 0, "iat": int(NOW), "exp": exp},
        {"scope": "admin", "iat": int(NOW)},  # no exp: tokens never live forever
        {"scope": "admin", "iat": int(NOW), "exp": "never"},
        ["admin"],
    ):
        error = refused(bearer(signed(claims)))
        assert error.status == 401, claims


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token kst1.a.b",
        "Bearer kst1.onlytwo",
        "Bearer kst1.a.b.c",
        "Bearer kst1.!!!.@@@",
        "Bearer kst1..",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",  # a JWT is not our format
        "Bearer kst1." + "A" * 5000 + ".x",
        "Bearer kst1.é.é",
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
    old_token = issue_token("old", "user", user_id=5, now=NOW)
    new_token = issue_token("new", "user", user_id=5, now=NOW)
    rotating = config(secrets=("new", "old"))
    assert authenticate(bearer(old_token), rotating, NOW).user_id == 5
    assert authenticate(bearer(new_token), rotating, NOW).user_id == 5
    # Once the old secret is dropped its tokens stop working.
    assert refused(bearer(old_token), config(secrets=("new",))).code == "invalid_credentials"


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
    monkeypatch.setattr(stack, "start_ray", lambda state: seen.update(stack._ray_env()))
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
