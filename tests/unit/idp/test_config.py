"""idp.config: the issuer check, IDP_* variables, and the instance secret."""

import os
import re
import stat

import pytest

from idp.config import DEFAULT_ISSUER, SETTINGS, ConfigError, check_issuer, load

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
    values = load(tmp_path)
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
        "IDP_WS_HEARTBEAT": 25,
        "IDP_SHORT_CODE_TTL": 120,
        "IDP_SHORT_CODE_ATTEMPTS": 5,
        "IDP_SHORT_CODE_WINDOW": 600,
        "IDP_QR_MAX_RENEWALS": 5,
        "IDP_DEMO_PHONE_COMMAND": "",
        "IDP_TRUSTED_PROXIES": 0,
        "IDP_METRICS_TOKEN": "",
        "IDP_GEOIP_DATABASE": "",
        "IDP_AUDIT_RETENTION_DAYS": 365,
        "IDP_NUMBER_MATCHING": False,
        "IDP_RATELIMIT_ENABLED": True,
        "IDP_RATELIMIT_STORAGE_URL": "memory://",
        "IDP_RATELIMIT_PREFIX": "qridp-limits",
        "IDP_LIMIT_BROWSER": "60/minute;600/hour",
        "IDP_LIMIT_ENROLL": "10/minute;30/hour",
        "IDP_LIMIT_PHONE_IP": "300/minute",
        "IDP_LIMIT_DEVICE": "30/minute;300/hour",
        "IDP_LIMIT_PASSWORD": "5 per 15 minutes",
        "IDP_LOG_FORMAT": "json",
        "IDP_LOG_LEVEL": "INFO",
        "IDP_DATABASE_LOCK_TIMEOUT": 5,
        "IDP_DATABASE_STATEMENT_TIMEOUT": 15,
    }


def test_limit_counters_live_in_the_brokers_redis(tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert load(tmp_path)["IDP_RATELIMIT_STORAGE_URL"] == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("IDP_RATELIMIT_STORAGE_URL", "memory://")
    assert load(tmp_path)["IDP_RATELIMIT_STORAGE_URL"] == "memory://"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDP_LOG_FORMAT", "xml", "IDP_LOG_FORMAT must be json or text, not 'xml'"),
        ("IDP_LOG_LEVEL", "chatty", "IDP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
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
    monkeypatch.setenv("IDP_DEMO_PHONE_COMMAND", "idp-phone scan")
    values = load(tmp_path)
    assert values["IDP_ISSUER"] == "https://id.example.com"
    assert values["IDP_DATABASE_URL"] == "postgresql+psycopg://idp@db/idp"
    assert values["IDP_BROKER_URL"] == "redis://cache:6379/0"
    assert values["IDP_SECRET_KEY"] == "from-the-environment"
    assert values["IDP_LOGIN_REQUEST_TTL"] == 30
    assert values["IDP_CODE_TTL"] == 0
    assert values["IDP_TRUSTED_PROXIES"] == 2
    assert values["IDP_DEMO_PHONE_COMMAND"] == "idp-phone scan"
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


INT_SETTINGS = [name for name, (kind, _) in SETTINGS.items() if kind is int]


def test_the_whole_number_settings_are_the_documented_ones():
    assert INT_SETTINGS == [
        "IDP_LOGIN_REQUEST_TTL",
        "IDP_CODE_TTL",
        "IDP_ACCESS_TOKEN_TTL",
        "IDP_REFRESH_TOKEN_TTL",
        "IDP_ID_TOKEN_TTL",
        "IDP_KEY_PUBLISH_AHEAD",
        "IDP_PROOF_MAX_AGE",
        "IDP_SESSION_TTL",
        "IDP_WS_HEARTBEAT",
        "IDP_SHORT_CODE_TTL",
        "IDP_SHORT_CODE_ATTEMPTS",
        "IDP_SHORT_CODE_WINDOW",
        "IDP_QR_MAX_RENEWALS",
        "IDP_TRUSTED_PROXIES",
        "IDP_AUDIT_RETENTION_DAYS",
        "IDP_DATABASE_LOCK_TIMEOUT",
        "IDP_DATABASE_STATEMENT_TIMEOUT",
    ]


@pytest.mark.parametrize("name", INT_SETTINGS)
@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "12s", "0x10", "ten", "--1"])
def test_a_whole_number_setting_that_is_not_a_number_is_refused(tmp_path, monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must be a whole number, not {raw!r}"


@pytest.mark.parametrize("name", INT_SETTINGS)
@pytest.mark.parametrize(("raw", "value"), [("-1", -1), ("-3600", -3600), (" -5 ", -5)])
def test_a_negative_whole_number_is_refused(tmp_path, monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"{name} must not be negative, not {value}"


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
    # An override that is a good issuer wins over the bad environment value...
    assert load(tmp_path, {"IDP_ISSUER": "https://id.example.com/"})["IDP_ISSUER"] == (
        "https://id.example.com"
    )
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
    assert load(tmp_path)["IDP_SECRET_KEY"] == "kept-from-before"


def test_each_instance_gets_its_own_secret(tmp_path):
    assert load(tmp_path / "a")["IDP_SECRET_KEY"] != load(tmp_path / "b")["IDP_SECRET_KEY"]
