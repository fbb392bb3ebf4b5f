"""idp.config: the issuer check, IDP_* variables, and the instance secret."""

import dataclasses
import os
import re
import stat

import pytest

from idp.config import (
    DEFAULT_ISSUER,
    SETTINGS,
    Boolean,
    ConfigError,
    Limit,
    Seconds,
    WholeNumber,
    _kind,
    check_issuer,
    is_redis_url,
    load,
)
from idp.db import make_engine
from idp.limits import storage_uri

HTTP_REFUSED = (
    "IDP_ISSUER {issuer!r} is plain http on a host that is not loopback: "
    "use https:// (http is only for 127.0.0.1, ::1 or localhost)"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No IDP_* variable of the surrounding shell leaks into a test."""
    for name in [*SETTINGS, "IDP_INSTANCE_PATH"]:
        monkeypatch.delenv(name, raising=False)


# check_issuer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://id.example.com", "https://id.example.com"),
        ("https://id.example.com/", "https://id.example.com"),
        ("https://id.example.com///", "https://id.example.com"),
        ("https://id.example.com/tenant", "https://id.example.com/tenant"),
        ("https://id.example.com/tenant/", "https://id.example.com/tenant"),
        ("https://id.example.com:8443", "https://id.example.com:8443"),
        ("http://127.0.0.1", "http://127.0.0.1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://[::1]", "http://[::1]"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("http://localhost", "http://localhost"),
        ("http://localhost:8000/idp/", "http://localhost:8000/idp"),
        # The whole of 127.0.0.0/8 is loopback (ipaddress.is_loopback), not only .1.
        ("http://127.0.0.2:8000", "http://127.0.0.2:8000"),
    ],
)
def test_accepted_issuers_lose_their_trailing_slash(issuer, expected):
    assert check_issuer(issuer) == expected


@pytest.mark.parametrize(
    "issuer",
    [
        "http://example.com",
        "http://id.example.com:8000/",
        "http://localhost.example.com",  # not localhost, a name that starts like it
        "http://localhost@example.com",  # userinfo "localhost", host example.com
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8000",
        "http://10.0.0.1",
        "http://192.168.1.10:8000",
        "http://[::]",
        "http://[2001:db8::1]",
    ],
)
def test_plain_http_on_a_non_loopback_host_is_refused(issuer):
    with pytest.raises(ConfigError) as caught:
        check_issuer(issuer)
    assert str(caught.value) == HTTP_REFUSED.format(issuer=issuer.rstrip("/"))


@pytest.mark.parametrize(
    "issuer",
    [
        "https://id.example.com/?tenant=a",
        "https://id.example.com?x=1",
        "https://id.example.com/#top",
        "https://id.example.com#top",
        "http://127.0.0.1:8000/?debug=1",
        "http://localhost/#x",
    ],
)
def test_query_or_fragment_is_refused(issuer):
    with pytest.raises(ConfigError) as caught:
        check_issuer(issuer)
    assert str(caught.value) == "IDP_ISSUER must not have a query or a fragment"


@pytest.mark.parametrize(
    "issuer",
    [
        "ftp://id.example.com",
        "ws://127.0.0.1:8000",
        "wss://id.example.com",
        "file:///etc/passwd",
        "id.example.com",
        "//id.example.com",
        "/idp",
        "https://",
        "https:///path",
        "",
    ],
)
def test_other_schemes_and_hostless_urls_are_refused(issuer):
    with pytest.raises(ConfigError) as caught:
        check_issuer(issuer)
    assert str(caught.value) == f"IDP_ISSUER must be an https:// URL, not {issuer.rstrip('/')!r}"


@pytest.mark.parametrize(
    "issuer",
    [
        "https://id.example.com?",
        "https://id.example.com/?",
        "https://id.example.com#",
        " https://id.example.com",
    ],
)
def test_empty_query_fragment_or_surrounding_space_is_not_an_issuer(issuer):
    with pytest.raises(ConfigError):
        check_issuer(issuer)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# load() ---------------------------------------------------------------------------------


def test_defaults(tmp_path):
    values = load(tmp_path).as_config()
    secret = (tmp_path / "secret_key").read_text()
    assert values == {
        "IDP_ISSUER": DEFAULT_ISSUER,
        "IDP_NAME": "QR-IdP",
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}",
        "IDP_BROKER_URL": "memory://",
        "IDP_SECRET_KEY": secret,
        "IDP_LOGIN_REQUEST_TTL": 120,
        "IDP_CODE_TTL": 50,
        "IDP_ACCESS_TOKEN_TTL": 3600,
        "IDP_REFRESH_TOKEN_TTL": 30 * 24 * 3600,
        "IDP_ID_TOKEN_TTL": 3600,
        "IDP_KEY_PUBLISH_AHEAD": 600,
        "IDP_PROOF_MAX_AGE": 60,
        "IDP_SESSION_TTL": 28800,
        "IDP_SSO_SCOPE": "per_client",
        "IDP_PASSWORD_ENROLLMENT": "first_phone",
        "IDP_ENROLLMENT_TTL": 600,
        "IDP_WS_HEARTBEAT": 25,
        "IDP_SHORT_CODE_TTL": 120,
        "IDP_SHORT_CODE_ATTEMPTS": 5,
        "IDP_SHORT_CODE_WINDOW": 600,
        "IDP_DEVICE_CODE_TTL": 600,
        "IDP_DEVICE_POLL_INTERVAL": 5,
        "IDP_QR_MAX_RENEWALS": 5,
        "IDP_TRUSTED_PROXIES": 0,
        "IDP_METRICS_TOKEN": "",
        "IDP_GEOIP_DATABASE": "",
        "IDP_AUDIT_RETENTION_DAYS": 365,
        "IDP_NUMBER_MATCHING": False,
        "IDP_PROXIMITY": "warn",
        "IDP_RATELIMIT_ENABLED": True,
        "IDP_RATELIMIT_STORAGE_URL": "memory://",
        "IDP_RATELIMIT_PREFIX": "qridp-limits",
        "IDP_LIMIT_BROWSER": "60/minute;600/hour",
        "IDP_LIMIT_ENROLL": "10/minute;30/hour",
        "IDP_LIMIT_PHONE_IP": "300/minute",
        "IDP_LIMIT_DEVICE": "30/minute;300/hour",
        "IDP_LIMIT_PASSWORD": "5 per 15 minutes",
        "IDP_LIMIT_DEVICE_AUTHORIZATION": "20/minute;200/hour",
        "IDP_LIMIT_BACKCHANNEL": "60/minute;600/hour",
        "IDP_LOG_FORMAT": "json",
        "IDP_LOG_LEVEL": "INFO",
        "IDP_PREVIOUS_SECRET_KEY": "",
        "IDP_DATABASE_LOCK_TIMEOUT": 5,
        "IDP_DATABASE_STATEMENT_TIMEOUT": 15,
        "IDP_REDIS_TIMEOUT": 2,
        "IDP_REDIS_PING_INTERVAL": 5,
        "IDP_WS_MAX_PER_REQUEST": 4,
        "IDP_WS_MAX_PER_IP": 100,
        "IDP_CIBA_TTL": 300,
        "IDP_CIBA_POLL_INTERVAL": 5,
        "IDP_LIMIT_CIBA_SUBJECT": "5/10 minutes;20/day",
        "IDP_CIBA_MUTE": 3600,
        "IDP_CIBA_PING_TIMEOUT": 3,
        "IDP_CIBA_PING_ATTEMPTS": 4,
    }


@pytest.mark.parametrize(("raw", "parsed"), [("all", "all"), (" Per_Client ", "per_client")])
def test_the_sso_scope_is_a_choice(tmp_path, monkeypatch, raw, parsed):
    monkeypatch.setenv("IDP_SSO_SCOPE", raw)
    assert load(tmp_path)["IDP_SSO_SCOPE"] == parsed


@pytest.mark.parametrize(
    ("raw", "parsed"), [("always", "always"), (" NEVER ", "never"), ("first_phone", "first_phone")]
)
def test_password_enrollment_is_a_choice(tmp_path, monkeypatch, raw, parsed):
    monkeypatch.setenv("IDP_PASSWORD_ENROLLMENT", raw)
    assert load(tmp_path)["IDP_PASSWORD_ENROLLMENT"] == parsed


@pytest.mark.parametrize("raw", ["first-phone", "yes", "sometimes"])
def test_a_malformed_password_enrollment_is_refused(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("IDP_PASSWORD_ENROLLMENT", raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == (
        f"IDP_PASSWORD_ENROLLMENT must be first_phone, always or never, not {raw!r}"
    )


def test_an_enrollment_lifetime_under_a_minute_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_ENROLLMENT_TTL", "59")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == "IDP_ENROLLMENT_TTL must be at least 60, not 59"


@pytest.mark.parametrize("raw", ["any", "per-client", "all,per_client", "none"])
def test_a_malformed_sso_scope_is_refused(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("IDP_SSO_SCOPE", raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"IDP_SSO_SCOPE must be per_client or all, not {raw!r}"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("warn", "warn"), (" Require_Same_Network ", "require_same_network"), ("OFF", "off")],
)
def test_the_proximity_policy_is_a_choice(tmp_path, monkeypatch, raw, parsed):
    monkeypatch.setenv("IDP_PROXIMITY", raw)
    assert load(tmp_path)["IDP_PROXIMITY"] == parsed


@pytest.mark.parametrize("raw", ["require", "same_network", "none", "warn,off"])
def test_a_malformed_proximity_policy_is_refused(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("IDP_PROXIMITY", raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == (
        f"IDP_PROXIMITY must be warn, require_same_network or off, not {raw!r}"
    )


def test_limit_counters_live_in_the_brokers_redis(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("IDP_SECRET_KEY", "shared")
    assert load(tmp_path)["IDP_RATELIMIT_STORAGE_URL"] == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("IDP_RATELIMIT_STORAGE_URL", "memory://")
    assert load(tmp_path)["IDP_RATELIMIT_STORAGE_URL"] == "memory://"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDP_LOG_FORMAT", "xml", "IDP_LOG_FORMAT must be json or text, not 'xml'"),
        (
            "IDP_LOG_LEVEL",
            "chatty",
            "IDP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not 'chatty'",
        ),
    ],
)
def test_log_settings_are_checked(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load(tmp_path)
    assert str(error.value) == message


def test_log_level_is_case_insensitive(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_LOG_LEVEL", "warning")
    assert load(tmp_path)["IDP_LOG_LEVEL"] == "WARNING"


def test_environment_variables_are_read_and_whole_numbers_parsed(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_ISSUER", "https://id.example.com/")
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql+psycopg://idp@db/idp")
    monkeypatch.setenv("IDP_BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("IDP_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("IDP_LOGIN_REQUEST_TTL", "30")
    monkeypatch.setenv("IDP_CODE_TTL", "0")
    monkeypatch.setenv("IDP_TRUSTED_PROXIES", "2")
    values = load(tmp_path)
    assert values["IDP_ISSUER"] == "https://id.example.com"
    assert values["IDP_DATABASE_URL"] == "postgresql+psycopg://idp@db/idp"
    assert values["IDP_BROKER_URL"] == "redis://cache:6379/0"
    assert values["IDP_SECRET_KEY"] == "from-the-environment"
    assert values["IDP_LOGIN_REQUEST_TTL"] == 30
    assert values["IDP_CODE_TTL"] == 0
    assert values["IDP_TRUSTED_PROXIES"] == 2
    assert values["IDP_ACCESS_TOKEN_TTL"] == 3600  # untouched settings keep their default
    # A secret key from the environment means no secret file is made.
    assert not (tmp_path / "secret_key").exists()


def test_an_empty_variable_means_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_LOGIN_REQUEST_TTL", "")
    monkeypatch.setenv("IDP_BROKER_URL", "")
    monkeypatch.setenv("IDP_ISSUER", "")
    values = load(tmp_path)
    assert values["IDP_LOGIN_REQUEST_TTL"] == 120
    assert values["IDP_BROKER_URL"] == "memory://"
    assert values["IDP_ISSUER"] == DEFAULT_ISSUER


def _settings_of(*kinds):
    return [name for name, (kind, _) in SETTINGS.items() if _kind(kind).__class__ in kinds]


INT_SETTINGS = _settings_of(WholeNumber)
DURATION_SETTINGS = _settings_of(Seconds)
BOOL_SETTINGS = _settings_of(Boolean)
LIMIT_SETTINGS = _settings_of(Limit)


def test_the_whole_number_and_duration_settings_are_the_documented_ones():
    assert INT_SETTINGS == [
        "IDP_SHORT_CODE_ATTEMPTS",
        "IDP_QR_MAX_RENEWALS",
        "IDP_TRUSTED_PROXIES",
        "IDP_AUDIT_RETENTION_DAYS",
        "IDP_WS_MAX_PER_REQUEST",
        "IDP_WS_MAX_PER_IP",
        "IDP_CIBA_PING_ATTEMPTS",
    ]
    assert DURATION_SETTINGS == [
        "IDP_LOGIN_REQUEST_TTL",
        "IDP_CODE_TTL",
        "IDP_ACCESS_TOKEN_TTL",
        "IDP_REFRESH_TOKEN_TTL",
        "IDP_ID_TOKEN_TTL",
        "IDP_KEY_PUBLISH_AHEAD",
        "IDP_PROOF_MAX_AGE",
        "IDP_SESSION_TTL",
        "IDP_ENROLLMENT_TTL",
        "IDP_WS_HEARTBEAT",
        "IDP_SHORT_CODE_TTL",
        "IDP_SHORT_CODE_WINDOW",
        "IDP_DEVICE_CODE_TTL",
        "IDP_DEVICE_POLL_INTERVAL",
        "IDP_DATABASE_LOCK_TIMEOUT",
        "IDP_DATABASE_STATEMENT_TIMEOUT",
        "IDP_REDIS_TIMEOUT",
        "IDP_REDIS_PING_INTERVAL",
        "IDP_CIBA_TTL",
        "IDP_CIBA_POLL_INTERVAL",
        "IDP_CIBA_MUTE",
        "IDP_CIBA_PING_TIMEOUT",
    ]


@pytest.mark.parametrize(
    "name",
    ["IDP_REDIS_TIMEOUT", "IDP_REDIS_PING_INTERVAL", "IDP_WS_MAX_PER_REQUEST", "IDP_WS_MAX_PER_IP"],
)
def test_a_bound_of_zero_is_refused(tmp_path, monkeypatch, name):
    """0 would mean "wait for ever" to redis-py, or refuse every page socket."""
    monkeypatch.setenv(name, "0")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be at least 1, not 0"


NOT_NUMBERS = ["abc", "1.5", "1e3", "12s", "2m", "0x10", "ten", "--1", "1_000", "\u0661\u0662"]


@pytest.mark.parametrize("name", INT_SETTINGS)
@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_a_whole_number_setting_that_is_not_a_number_is_refused(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be a whole number, not {raw!r}"


@pytest.mark.parametrize("name", DURATION_SETTINGS)
@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_a_duration_that_is_not_whole_seconds_is_refused(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be a whole number of seconds, not {raw!r}"


@pytest.mark.parametrize(
    "name", [n for n in INT_SETTINGS + DURATION_SETTINGS if _kind(SETTINGS[n][0]).minimum == 0]
)
@pytest.mark.parametrize(("raw", "value"), [("-1", -1), ("-3600", -3600), (" -5 ", -5)])
def test_a_negative_whole_number_is_refused(tmp_path, monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must not be negative, not {value}"


@pytest.mark.parametrize("name", ["IDP_LOGIN_REQUEST_TTL", "IDP_WS_HEARTBEAT"])
@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("-1", -1)])
def test_a_duration_that_must_be_positive_refuses_zero(tmp_path, monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be at least 1, not {value}"


BOOLEAN_ACCEPTS = "one of 1, true, yes, on (on) or 0, false, no, off (off)"


def test_the_boolean_settings_are_the_documented_ones():
    assert BOOL_SETTINGS == ["IDP_NUMBER_MATCHING", "IDP_RATELIMIT_ENABLED"]


@pytest.mark.parametrize("name", BOOL_SETTINGS)
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[(word, True) for word in ("1", "true", "yes", "on", "TRUE", "Yes", " on ")],
        *[(word, False) for word in ("0", "false", "no", "off", "FALSE", "No", " off ")],
    ],
)
def test_a_boolean_accepts_exactly_the_documented_words(tmp_path, monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    assert load(tmp_path)[name] is value


@pytest.mark.parametrize("name", BOOL_SETTINGS)
@pytest.mark.parametrize("raw", ["ture", "flase", "enabled", "disabled", "2", "-1", "y", "n", "t"])
def test_a_malformed_boolean_is_refused(tmp_path, monkeypatch, name, raw):
    # Before: anything but 1/true/yes/on meant "off": IDP_RATELIMIT_ENABLED=ture quietly
    # switched the abuse limits off.
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be {BOOLEAN_ACCEPTS}, not {raw!r}"


@pytest.mark.parametrize("name", LIMIT_SETTINGS)
@pytest.mark.parametrize("raw", ["lots", "10/fortnight", "ten per minute", "/minute", ";"])
def test_a_malformed_limit_is_refused(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be limits like '10/minute;50/hour', not {raw!r}"


STORE_ACCEPTS = "memory:// or a Redis URL (redis://host:6379/0, rediss://... or unix:///path)"


@pytest.mark.parametrize("name", ["IDP_BROKER_URL", "IDP_RATELIMIT_STORAGE_URL"])
@pytest.mark.parametrize(
    "raw",
    [
        "memory",
        "memory:///",
        "redis",
        "redis://",
        "redis://:6379/0",
        "redis://cache:port/0",
        "redis://cache:6379/zero",
        "redis+unix:///run/redis.sock",
        "unix://",
        "memcached://cache:11211",
        "http://cache:6379",
    ],
)
def test_a_malformed_broker_or_counter_url_is_refused(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    monkeypatch.setenv("IDP_SECRET_KEY", "s")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be {STORE_ACCEPTS}, not {raw!r}"


@pytest.mark.parametrize(
    "url",
    ["redis://cache:6379/0", "redis://cache", "rediss://:pw@cache:6380/2", "unix:///run/r.sock"],
)
def test_every_redis_url_is_redis_to_the_broker_and_the_limits_alike(tmp_path, monkeypatch, url):
    # Before: unix:// was Redis to the broker, but the limits kept their counters in memory.
    monkeypatch.setenv("IDP_BROKER_URL", url)
    monkeypatch.setenv("IDP_SECRET_KEY", "s")
    values = load(tmp_path)
    assert values["IDP_RATELIMIT_STORAGE_URL"] == url
    assert is_redis_url(url)
    expected = "redis+" + url if url.startswith("unix://") else url
    assert storage_uri(values["IDP_RATELIMIT_STORAGE_URL"]) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://idp@db/idp",
        "postgresql://idp@db/idp",  # psycopg2, not installed: say psycopg
        "sqlite",
        "not a url",
        "postgres+psycopg://idp@db/idp",
    ],
)
def test_a_malformed_database_url_is_refused(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("IDP_DATABASE_URL", raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert message.startswith("IDP_DATABASE_URL must be sqlite:///path/to/file or ")
    assert "postgresql+psycopg://user@host/database" in message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDP_NUMBER_MATCHING", 1, f"IDP_NUMBER_MATCHING must be {BOOLEAN_ACCEPTS}, not 1"),
        ("IDP_CODE_TTL", 1.5, "IDP_CODE_TTL must be a whole number of seconds, not 1.5"),
        ("IDP_CODE_TTL", True, "IDP_CODE_TTL must be a whole number of seconds, not True"),
        ("IDP_CODE_TTL", -1, "IDP_CODE_TTL must not be negative, not -1"),
        (
            "IDP_RATELIMIT_ENABLED",
            "ture",
            f"IDP_RATELIMIT_ENABLED must be {BOOLEAN_ACCEPTS}, not 'ture'",
        ),
        ("IDP_LOG_FORMAT", "xml", "IDP_LOG_FORMAT must be json or text, not 'xml'"),
        ("IDP_RATELIMIT_ENABLE", False, "IDP_RATELIMIT_ENABLE is not a setting of the IdP"),
    ],
)
def test_overrides_are_checked_like_the_environment(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {name: value})
    assert str(caught.value) == message


def test_settings_are_one_frozen_object(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_CODE_TTL", "30")
    monkeypatch.setenv("IDP_SECRET_KEY", "do-not-print-me")
    monkeypatch.setenv("IDP_METRICS_TOKEN", "nor-me")
    settings = load(tmp_path)
    assert settings.code_ttl == 30 == settings["IDP_CODE_TTL"]
    assert settings.as_config()["IDP_CODE_TTL"] == 30
    assert set(settings.as_config()) == set(SETTINGS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.code_ttl = 5
    assert "do-not-print-me" not in repr(settings)
    assert "nor-me" not in repr(settings)


def test_plain_types_in_the_table_keep_working():
    assert _kind(int).parse("IDP_X", "7") == 7
    assert _kind(bool).parse("IDP_X", "off") is False
    assert _kind(str).parse("IDP_X", " as is ") == " as is "


# Rules between settings -----------------------------------------------------------------

SEVERAL_HOSTS = "IDP_SECRET_KEY must be set when IDP_DATABASE_URL is PostgreSQL or IDP_BROKER_URL"


@pytest.mark.parametrize(
    "environment",
    [
        {"IDP_DATABASE_URL": "postgresql+psycopg://idp@db/idp", "IDP_BROKER_URL": "redis://r"},
        {"IDP_BROKER_URL": "redis://cache:6379/0"},
        {"IDP_BROKER_URL": "unix:///run/redis.sock"},
    ],
)
def test_several_hosts_need_a_secret_key_set(tmp_path, monkeypatch, environment):
    # Before: each host made its own secret in its own instance folder.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "instance")
    assert str(caught.value).startswith(SEVERAL_HOSTS)
    assert "several hosts" in str(caught.value)
    assert not (tmp_path / "instance").exists()  # no secret file of its own was made
    monkeypatch.setenv("IDP_SECRET_KEY", "shared")
    assert load(tmp_path / "instance")["IDP_SECRET_KEY"] == "shared"


def test_postgresql_with_the_in_process_broker_is_one_process(tmp_path, monkeypatch):
    # An admin's `idp` command, or a single process: allowed (idp serve --workers N is not).
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql+psycopg://idp@db/idp")
    monkeypatch.setenv("IDP_SECRET_KEY", "shared")
    assert load(tmp_path)["IDP_BROKER_URL"] == "memory://"


def test_a_previous_secret_key_needs_a_new_one(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_PREVIOUS_SECRET_KEY", "old")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == (
        "IDP_PREVIOUS_SECRET_KEY is set but IDP_SECRET_KEY is not: set IDP_SECRET_KEY to "
        "the new secret"
    )


def test_the_embedded_mode_needs_no_secret_key(tmp_path):
    values = load(tmp_path / "instance")
    assert values["IDP_SECRET_KEY"] == (tmp_path / "instance" / "secret_key").read_text()


def test_overrides_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_ISSUER", "https://env.example.com")
    monkeypatch.setenv("IDP_BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("IDP_LOGIN_REQUEST_TTL", "30")
    monkeypatch.setenv("IDP_SECRET_KEY", "env-secret")
    values = load(
        tmp_path,
        {
            "IDP_ISSUER": "https://override.example.com/",
            "IDP_BROKER_URL": "memory://",
            "IDP_LOGIN_REQUEST_TTL": 5,
            "IDP_SECRET_KEY": "override-secret",
        },
    )
    assert values["IDP_ISSUER"] == "https://override.example.com"
    assert values["IDP_BROKER_URL"] == "memory://"
    assert values["IDP_LOGIN_REQUEST_TTL"] == 5
    assert values["IDP_SECRET_KEY"] == "override-secret"


def test_a_bad_environment_value_fails_even_under_an_override(tmp_path, monkeypatch):
    # The environment is parsed before the overrides are applied: a bad value there fails
    # even when an override would replace it.
    monkeypatch.setenv("IDP_CODE_TTL", "soon")
    with pytest.raises(ConfigError, match=re.escape("IDP_CODE_TTL must be a whole number")):
        load(tmp_path, {"IDP_CODE_TTL": 10})


def test_the_issuer_is_checked_whether_it_comes_from_the_environment_or_an_override(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("IDP_ISSUER", "http://example.com")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == HTTP_REFUSED.format(issuer="http://example.com")
    # Every variable is parsed once, before the overrides: a bad one fails even under a
    # good override (as for the other settings)...
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"IDP_ISSUER": "https://id.example.com/"})
    assert str(caught.value) == HTTP_REFUSED.format(issuer="http://example.com")
    # ...and a bad override is refused even when the environment is fine.
    monkeypatch.setenv("IDP_ISSUER", "https://id.example.com")
    with pytest.raises(ConfigError, match="must not have a query or a fragment"):
        load(tmp_path, {"IDP_ISSUER": "https://id.example.com/?x=1"})


def test_empty_overrides_fall_back_to_the_computed_defaults(tmp_path):
    values = load(tmp_path, {"IDP_DATABASE_URL": "", "IDP_SECRET_KEY": None})
    assert values["IDP_DATABASE_URL"] == f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    assert values["IDP_SECRET_KEY"] == (tmp_path / "secret_key").read_text()


# The instance secret --------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_instance_secret_is_created_private_whatever_the_umask(tmp_path, umask):
    instance = tmp_path / "does" / "not" / "exist" / "yet"
    previous = os.umask(umask)
    try:
        values = load(instance)
    finally:
        os.umask(previous)
    path = instance / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == values["IDP_SECRET_KEY"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", values["IDP_SECRET_KEY"])  # 48 random bytes


def test_instance_secret_is_reused(tmp_path):
    first = load(tmp_path)["IDP_SECRET_KEY"]
    mtime = (tmp_path / "secret_key").stat().st_mtime_ns
    second = load(tmp_path)["IDP_SECRET_KEY"]
    assert second == first
    assert (tmp_path / "secret_key").stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_an_existing_secret_file_is_read_and_stripped(tmp_path):
    (tmp_path / "secret_key").write_text("  kept-from-before\n")
    (tmp_path / "secret_key").chmod(0o600)
    assert load(tmp_path)["IDP_SECRET_KEY"] == "kept-from-before"


def test_each_instance_gets_its_own_secret(tmp_path):
    assert load(tmp_path / "a")["IDP_SECRET_KEY"] != load(tmp_path / "b")["IDP_SECRET_KEY"]


# Secrets at rest: the instance folder, the secret file and SQLite's files -------------------


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_instance_folder_is_created_private_whatever_the_umask(tmp_path, umask):
    instance = tmp_path / "instance"
    previous = os.umask(umask)
    try:
        load(instance)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o750, 0o755, 0o705, 0o770])
def test_an_instance_folder_open_to_others_is_refused(tmp_path, mode):
    instance = tmp_path / "instance"
    instance.mkdir()
    instance.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load(instance)
    assert str(caught.value) == (
        f"the folder {instance} is open to other users (mode {mode:o}): it holds secrets "
        f"of the IdP; run chmod 700 {instance}"
    )


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o620])
def test_a_secret_file_open_to_others_is_refused(tmp_path, mode):
    load(tmp_path)
    path = tmp_path / "secret_key"
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == (
        f"the file {path} is open to other users (mode {mode:o}): it holds secrets "
        f"of the IdP; run chmod 600 {path}"
    )


def _write_some_rows(url):
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    return engine


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_sqlite_files_are_created_private(tmp_path, umask):
    # Before: the database, its -wal and -shm were 0644 and instance/ 0755 (default umask):
    # any local user could read the signing keys.
    instance = tmp_path / "instance"
    url = f"sqlite:///{instance / 'idp.sqlite3'}"
    previous = os.umask(umask)
    try:
        engine = _write_some_rows(url)
        names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in instance.iterdir()}
        engine.dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert names == {"idp.sqlite3": 0o600, "idp.sqlite3-wal": 0o600, "idp.sqlite3-shm": 0o600}


def test_an_open_instance_folder_holding_the_database_is_refused(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    url = f"sqlite:///{instance / 'idp.sqlite3'}"
    _write_some_rows(url).dispose()
    instance.chmod(0o755)
    monkeypatch.setenv("IDP_SECRET_KEY", "given")  # no secret file: the database alone
    with pytest.raises(ConfigError, match=re.escape(f"run chmod 700 {instance}")):
        load(instance)


def test_migrating_creates_a_private_database(tmp_path):
    from idp.migrate import upgrade

    path = tmp_path / "new" / "idp.sqlite3"
    upgrade(f"sqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_sqlite_files_open_to_others_are_refused(tmp_path, suffix):
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    _write_some_rows(url)  # keeps the engine (and so the -wal and -shm files) open
    path = tmp_path / f"idp.sqlite3{suffix}"
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "instance", {"IDP_DATABASE_URL": url})
    assert str(caught.value) == (
        f"the file {path} is open to other users (mode 644): it holds secrets "
        f"of the IdP; run chmod 600 {path}"
    )
