"""Settings: credentials and rate limits from the environment or the local secrets file, carried to children."""

from __future__ import annotations

import json

import pytest

from app.config import Settings

KEY = "ksk_" + "k" * 43


def test_credentials_and_limits_come_from_the_environment(tmp_path):
    settings = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path),
            "KEYSCOPE_TOKEN_SECRETS": "new-secret, old-secret",
            "KEYSCOPE_SERVICE_KEYS": f"typeracer:{KEY},",
            "KEYSCOPE_USER_TOKEN_TTL_S": "120",
            "KEYSCOPE_ADMIN_TOKEN_TTL_S": "60",
            "KEYSCOPE_RATE_LIMIT_SERVICE_PER_S": "500.5",
            "KEYSCOPE_RATE_LIMIT_SERVICE_BURST": "1000",
            "KEYSCOPE_RATE_LIMIT_USER_PER_S": "2",
            "KEYSCOPE_RATE_LIMIT_USER_BURST": "4",
        }
    )
    assert settings.token_secrets == ("new-secret", "old-secret")
    assert settings.service_keys == (f"typeracer:{KEY}",)
    assert (settings.user_token_ttl_s, settings.admin_token_ttl_s) == (120, 60)
    assert (settings.rate_limit_service_per_s, settings.rate_limit_service_burst) == (500.5, 1000)
    assert (settings.rate_limit_user_per_s, settings.rate_limit_user_burst) == (2.0, 4)


def test_defaults_without_environment_or_secrets_file(tmp_path):
    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path)})
    assert settings.token_secrets == () and settings.service_keys == ()
    assert settings.user_token_ttl_s == 3600
    assert (settings.rate_limit_service_per_s, settings.rate_limit_service_burst) == (2000.0, 4000)
    assert (settings.rate_limit_user_per_s, settings.rate_limit_user_burst) == (20.0, 40)


def test_the_secrets_file_fills_in_what_the_environment_leaves_unset(tmp_path):
    (tmp_path / "secrets.json").write_text(json.dumps({"token_secrets": ["file-secret"], "service_keys": [KEY]}))
    from_file = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_TOKEN_SECRETS": ""})
    assert from_file.token_secrets == ("file-secret",)
    assert from_file.service_keys == (KEY,)
    overridden = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_TOKEN_SECRETS": "env-secret"})
    assert overridden.token_secrets == ("env-secret",)
    assert overridden.service_keys == (KEY,)


@pytest.mark.parametrize("content", ["not json", '["a"]', '{"token_secrets": "abc"}', '{"service_keys": [1]}'])
def test_a_broken_secrets_file_is_an_error_naming_it(tmp_path, content):
    (tmp_path / "secrets.json").write_text(content)
    with pytest.raises(ValueError, match="secrets.json"):
        Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path)})


def test_as_env_reproduces_the_settings_in_a_child_process(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        token_secrets=("one", "two"),
        service_keys=(f"a:{KEY}",),
        user_token_ttl_s=77,
        admin_token_ttl_s=33,
        rate_limit_service_per_s=12.5,
        rate_limit_service_burst=25,
        rate_limit_user_per_s=1.5,
        rate_limit_user_burst=3,
        ingest_interval_s=0.75,
        ingest_readers=5,
        ingest_min_pass_s=0.4,
        topic_trim_interval_s=0.0,
    )
    assert Settings.from_env(settings.as_env()) == settings


@pytest.mark.parametrize("raw", ["-1", "soon"])
def test_a_bad_minimum_pass_period_is_refused_by_name(raw):
    with pytest.raises(ValueError, match="KEYSCOPE_INGEST_MIN_PASS_S"):
        Settings.from_env({"KEYSCOPE_INGEST_MIN_PASS_S": raw})


@pytest.mark.parametrize("raw", ["-1", "soon"])
def test_a_bad_topic_trim_interval_is_refused_by_name(raw):
    with pytest.raises(ValueError, match="KEYSCOPE_TOPIC_TRIM_INTERVAL_S"):
        Settings.from_env({"KEYSCOPE_TOPIC_TRIM_INTERVAL_S": raw})


@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_a_bad_model_poll_interval_is_refused_by_name(raw):
    with pytest.raises(ValueError, match="KEYSCOPE_MODEL_POLL_S"):
        Settings.from_env({"KEYSCOPE_MODEL_POLL_S": raw})


def test_the_model_poll_interval_reaches_a_child_process(tmp_path):
    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_MODEL_POLL_S": "2.5"})
    assert settings.model_poll_s == 2.5 and Settings().model_poll_s == 10.0
    assert Settings.from_env(settings.as_env()).model_poll_s == 2.5


def test_describe_masks_credentials_and_shows_the_rest(tmp_path):
    settings = Settings(data_dir=tmp_path, token_secrets=("hunter2",), service_keys=(f"a:{KEY}",))
    view = settings.describe()
    assert "hunter2" not in json.dumps(view) and KEY not in json.dumps(view)
    assert "hunter2" not in repr(settings) and KEY not in repr(settings)
    assert (view["token_secrets"], view["service_keys"]) == ("<1 secrets>", "<1 keys>")
    assert Settings(data_dir=tmp_path).describe()["token_secrets"] == "<none>"
    assert view["redis_url"] == settings.redis_url
    assert view["rate_limit_user_per_s"] == "20.0"


def test_the_mysql_dsn_is_read_once_and_never_shown(tmp_path):
    dsn = "mysql://root:hunter2@db:3306/typing"
    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_MYSQL_DSN": dsn})
    assert settings.mysql_dsn == dsn
    assert "hunter2" not in repr(settings) and "hunter2" not in json.dumps(settings.describe())
    assert settings.describe()["mysql_dsn"] == "<set>"
    assert Settings.from_env(settings.as_env()) == settings
