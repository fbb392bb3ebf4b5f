"""The ``idp`` console script, run as an admin runs it: a subprocess with IDP_* variables."""

import hashlib
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from support import sqlite_database

IDP = Path(sys.executable).parent / "idp"
PASSWORD = "correct horse battery staple"
HTTPS_MESSAGE = (
    "IDP_ISSUER 'http://example.com' is plain http on a host that is not loopback: "
    "use https:// (http is only for 127.0.0.1, ::1 or localhost)"
)
BAD_URI_MESSAGE = (
    "error: redirect URI 'http://rp.example/cb' must be https, http on a loopback host, "
    "or a reverse-domain scheme of a native app\n"
)


@dataclass
class Cli:
    tmp: Path
    database: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env["IDP_DATABASE_URL"] = f"sqlite:///{self.database}"
        env["IDP_INSTANCE_PATH"] = str(self.tmp / "instance")
        return env

    def __call__(
        self, command: str, *, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``idp <command>`` (split like a shell would)."""
        return subprocess.run(
            [str(IDP), *shlex.split(command)],
            input=input,
            capture_output=True,
            text=True,
            env=self.env | (env or {}),
            timeout=120,
            check=False,
        )

    def rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(sql).fetchall()


@pytest.fixture
def fresh(tmp_path):
    """The command, pointed at a database file that does not exist yet."""
    return Cli(tmp=tmp_path, database=tmp_path / "x.sqlite3")


@pytest.fixture
def idp(fresh):
    """The command, pointed at a migrated database (a copy of the migrated template)."""
    sqlite_database(fresh.database)
    return fresh


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


def failed(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr


# idp db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_and_can_run_again(fresh):
    assert not fresh.database.exists()
    assert ok(fresh("db upgrade")) == "database is up to date\n"
    tables = {name for (name,) in fresh.rows("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "alembic_version",
        "users",
        "clients",
        "client_origins",
        "devices",
        "invitations",
        "enrollment_requests",
        "used_proofs",
        "login_requests",
        "authorization_codes",
        "tokens",
        "signing_keys",
        "short_code_failures",
        "browser_sessions",
        "browser_session_clients",
        "audit_events",
    }
    assert fresh.rows("SELECT version_num FROM alembic_version") == [("0011",)]
    assert ok(fresh("db upgrade")) == "database is up to date\n"
    # The instance folder got the secret key, private.
    secret = fresh.tmp / "instance" / "secret_key"
    assert secret.stat().st_mode & 0o777 == 0o600


# idp users create -------------------------------------------------------------------------


def test_users_create_reads_the_password_from_stdin(idp):
    out = ok(
        idp(
            "users create bob --email b@example.com --name 'Bob Example' --password-stdin",
            input=PASSWORD + "\n",
        )
    )
    [(username, email, name, subject, password_hash)] = idp.rows(
        "SELECT username, email, name, subject, password_hash FROM users"
    )
    assert (username, email, name) == ("bob", "b@example.com", "Bob Example")
    assert out == f"created user bob (sub {subject})\n"
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    # The line end of stdin is not part of the password.
    assert PasswordHasher().verify(password_hash, PASSWORD)


def test_users_create_without_email_or_name(idp):
    ok(idp("users create carol --password-stdin", input=PASSWORD + "\r\n"))
    [(email, name, password_hash)] = idp.rows("SELECT email, name, password_hash FROM users")
    assert (email, name) == (None, None)
    assert PasswordHasher().verify(password_hash, PASSWORD)


def test_a_taken_username_fails_with_a_clear_message(idp):
    ok(idp("users create bob --password-stdin", input=PASSWORD))
    result = idp(
        "users create bob --email other@example.com --password-stdin",
        input="another long password",
    )
    assert failed(result) == "error: the username 'bob' is taken\n"
    assert idp.rows("SELECT username, email FROM users") == [("bob", None)]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        ("bob", "short", "error: passwords have at least 8 characters\n"),
        ("bob", "", "error: passwords have at least 8 characters\n"),
        ("bob", "1234567", "error: passwords have at least 8 characters\n"),
        ("'b o b'", PASSWORD, "error: usernames are 1-150 letters, digits or _ . @ -\n"),
        ("bob --email nope", PASSWORD, "error: 'nope' is not an email address\n"),
    ],
)
def test_bad_users_are_refused(idp, args, password, message):
    result = idp(f"users create {args} --password-stdin", input=password + "\n")
    assert failed(result) == message
    assert idp.rows("SELECT count(*) FROM users") == [(0,)]


def test_users_create_requires_password_stdin(idp):
    result = idp("users create bob", input=PASSWORD + "\n")
    assert result.returncode == 2
    assert "Error: Missing option '--password-stdin'." in result.stderr
    assert idp.rows("SELECT count(*) FROM users") == [(0,)]


# idp clients ------------------------------------------------------------------------------


def create_json(idp: Cli, args: str) -> dict:
    return json.loads(ok(idp(f"clients create {args} --json")))


def test_clients_create_json_prints_id_and_secret_once(idp):
    out = ok(idp("clients create --name X --redirect-uri https://rp.example/cb --json"))
    created = json.loads(out)
    assert set(created) == {"client_id", "client_secret"}
    assert isinstance(created["client_secret"], str)
    assert len(created["client_secret"]) == 43
    [row] = idp.rows(
        "SELECT client_id, name, redirect_uris, client_secret_hash, token_endpoint_auth_method "
        "FROM clients"
    )
    assert row == (
        created["client_id"],
        "X",
        '["https://rp.example/cb"]',
        hashlib.sha256(created["client_secret"].encode()).hexdigest(),
        "client_secret_basic",
    )


def test_clients_create_public_json_has_a_null_secret(idp):
    out = ok(idp("clients create --name App --redirect-uri com.example.app:/cb --public --json"))
    created = json.loads(out)
    assert set(created) == {"client_id", "client_secret"}
    assert created["client_secret"] is None
    assert out == json.dumps({"client_id": created["client_id"], "client_secret": None}) + "\n"
    assert idp.rows("SELECT client_secret_hash, token_endpoint_auth_method FROM clients") == [
        (None, "none")
    ]


def test_clients_create_service_account_and_logo(idp):
    made = json.loads(
        ok(
            idp(
                "clients create --name Job --redirect-uri https://rp.example/cb --service-account"
                " --logo-uri https://rp.example/logo.png --json"
            )
        )
    )
    assert idp.rows("SELECT client_id, grant_types, logo_uri FROM clients") == [
        (
            made["client_id"],
            '["authorization_code", "refresh_token", "client_credentials"]',
            "https://rp.example/logo.png",
        )
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--public --service-account", "a service account needs a secret"),
        ("--logo-uri http://rp.example/l.png", "must be an https URL"),
    ],
)
def test_clients_create_refuses_bad_options(idp, args, message):
    result = idp(f"clients create --name J --redirect-uri https://rp.example/cb {args}")
    assert message in failed(result)
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


def test_clients_create_web_origins_and_id_token_alg(idp):
    made = create_json(
        idp,
        "--name SPA --public --redirect-uri https://App.Example:443/cb"
        " --redirect-uri com.example.app:/cb --web-origin https://admin.example:8443"
        " --web-origin http://localhost:5173 --id-token-alg ES256",
    )
    assert idp.rows("SELECT id_token_signed_response_alg FROM clients") == [("ES256",)]
    # Stored as browsers send them: the redirect URI's origin without its default port.
    assert idp.rows("SELECT client_id, origin FROM client_origins ORDER BY origin") == [
        (made["client_id"], "http://localhost:5173"),
        (made["client_id"], "https://admin.example:8443"),
        (made["client_id"], "https://app.example"),
    ]


@pytest.mark.parametrize(
    "origin",
    [
        "http://spa.example",  # plain http off loopback
        "https://spa.example/app",  # a path
        "https://spa.example/",
        "https://spa.example?x=1",
        "https://user@spa.example",
        "spa.example",
        "null",
        "com.example.app:/cb",
    ],
)
def test_clients_create_refuses_what_is_not_a_web_origin(idp, origin):
    result = idp(
        f"clients create --name J --redirect-uri https://rp.example/cb --web-origin {origin}"
    )
    assert failed(result) == (
        f"error: web origin {origin!r} must be an origin: https://host[:port] "
        "(http only on a loopback host), with no path\n"
    )
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]
    assert idp.rows("SELECT count(*) FROM client_origins") == [(0,)]


def test_clients_create_refuses_an_unknown_id_token_alg(idp):
    result = idp(
        "clients create --name J --redirect-uri https://rp.example/cb --id-token-alg HS256"
    )
    assert "Invalid value for '--id-token-alg'" in failed(result, code=2)
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


def test_clients_create_text_output(idp):
    out = ok(idp("clients create --name X --redirect-uri https://rp.example/cb"))
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("client_id: ")
    assert lines[1].startswith("client_secret: ")
    assert lines[2] == "(the secret is shown only now; the IdP keeps only its hash)"
    client_id = lines[0].removeprefix("client_id: ")
    secret = lines[1].removeprefix("client_secret: ")
    assert idp.rows("SELECT client_id, client_secret_hash FROM clients") == [
        (client_id, hashlib.sha256(secret.encode()).hexdigest())
    ]
    out = ok(idp("clients create --name P --redirect-uri http://localhost/cb --public"))
    [line] = out.splitlines()
    assert line.startswith("client_id: ")


def test_clients_list(idp):
    assert ok(idp("clients list --json")) == "[]\n"
    assert ok(idp("clients list")) == ""
    web = create_json(
        idp,
        "--name 'Web RP' --redirect-uri https://rp.example/cb "
        "--redirect-uri http://127.0.0.1:5000/cb",
    )
    app = create_json(idp, "--name App --redirect-uri com.example.app:/cb --public")
    listed = json.loads(ok(idp("clients list --json")))
    assert listed == [
        {
            "client_id": web["client_id"],
            "name": "Web RP",
            "type": "confidential",
            "redirect_uris": ["https://rp.example/cb", "http://127.0.0.1:5000/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "proximity": None,
            "ciba_mode": None,
            "ciba_notification_endpoint": None,
        },
        {
            "client_id": app["client_id"],
            "name": "App",
            "type": "public",
            "redirect_uris": ["com.example.app:/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "proximity": None,
            "ciba_mode": None,
            "ciba_notification_endpoint": None,
        },
    ]
    assert ok(idp("clients list")) == (
        f"{web['client_id']}  confidential  Web RP  "
        "https://rp.example/cb http://127.0.0.1:5000/cb\n"
        f"{app['client_id']}  public        App  com.example.app:/cb\n"
    )


DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


def test_clients_create_with_the_device_grant_and_list_it(idp):
    """A command line has no redirect URI: --device-grant needs none, public or not."""
    cli = create_json(idp, "--name 'Backup CLI' --public --device-grant")
    assert cli["client_secret"] is None
    tv = create_json(idp, "--name TV --device-grant --redirect-uri https://tv.example/cb")
    assert tv["client_secret"]
    listed = json.loads(ok(idp("clients list --json")))
    assert [(row["type"], row["redirect_uris"], row["grant_types"]) for row in listed] == [
        ("public", [], ["refresh_token", DEVICE_CODE]),  # no redirect URI: no code grant
        (
            "confidential",
            ["https://tv.example/cb"],
            ["authorization_code", "refresh_token", DEVICE_CODE],
        ),
    ]
    assert ok(idp("clients list")).splitlines() == [
        f"{cli['client_id']}  public        Backup CLI    device-grant",
        f"{tv['client_id']}  confidential  TV  https://tv.example/cb  device-grant",
    ]


def test_clients_create_with_a_proximity_policy_and_list_it(idp):
    bank = create_json(
        idp, "--name Bank --redirect-uri https://bank.example/cb --proximity require_same_network"
    )
    plain = create_json(idp, "--name Plain --redirect-uri https://plain.example/cb")
    assert idp.rows("SELECT client_id, proximity FROM clients ORDER BY id") == [
        (bank["client_id"], "require_same_network"),
        (plain["client_id"], None),  # follows IDP_PROXIMITY
    ]
    listed = json.loads(ok(idp("clients list --json")))
    assert [row["proximity"] for row in listed] == ["require_same_network", None]
    assert ok(idp("clients list")).splitlines() == [
        f"{bank['client_id']}  confidential  Bank  https://bank.example/cb"
        "  proximity=require_same_network",
        f"{plain['client_id']}  confidential  Plain  https://plain.example/cb",
    ]


@pytest.mark.parametrize("value", ["same_network", "strict", "OFF "])
def test_clients_create_refuses_an_unknown_proximity_policy(idp, value):
    result = idp(
        f"clients create --name J --redirect-uri https://rp.example/cb --proximity {value!r}"
    )
    assert "Invalid value for '--proximity'" in failed(result, code=2)
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


def test_clients_delete_then_delete_again(idp):
    keep = create_json(idp, "--name Keep --redirect-uri https://keep.example/cb")
    gone = create_json(idp, "--name Gone --redirect-uri https://gone.example/cb")
    client_id = gone["client_id"]
    assert ok(idp(f"clients delete {client_id}")) == f"deleted client {client_id}\n"
    assert failed(idp(f"clients delete {client_id}")) == f"error: no client {client_id!r}\n"
    assert failed(idp("clients delete no-such-client")) == "error: no client 'no-such-client'\n"
    assert idp.rows("SELECT client_id FROM clients") == [(keep["client_id"],)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param("--redirect-uri http://rp.example/cb", BAD_URI_MESSAGE, id="http"),
        pytest.param("--redirect-uri http://rp.example/cb --json", BAD_URI_MESSAGE, id="json"),
        pytest.param("--redirect-uri http://rp.example/cb --public", BAD_URI_MESSAGE, id="public"),
        pytest.param(
            "--redirect-uri https://rp.example/cb --redirect-uri http://rp.example/cb",
            BAD_URI_MESSAGE,
            id="one-of-two",
        ),
        pytest.param(
            "--redirect-uri 'https://rp.example/cb#x'",
            "error: redirect URI 'https://rp.example/cb#x' must not have a fragment "
            "(RFC 6749 §3.1.2)\n",
            id="fragment",
        ),
        pytest.param(
            "--redirect-uri 'javascript:alert(1)'",
            "error: redirect URI 'javascript:alert(1)' must be https, http on a loopback host, "
            "or a reverse-domain scheme of a native app\n",
            id="javascript",
        ),
    ],
)
def test_a_bad_redirect_uri_fails_and_registers_nothing(idp, args, message):
    assert failed(idp(f"clients create --name X {args}")) == message
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


def test_clients_create_requires_name_and_redirect_uri(idp):
    result = idp("clients create --name X")
    assert result.returncode == 2
    assert "Missing option '--redirect-uri'" in result.stderr
    assert "--device-grant" in result.stderr  # the one way to do without
    result = idp("clients create --redirect-uri https://rp.example/cb")
    assert result.returncode == 2
    assert "Missing option '--name'" in result.stderr
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


# A configuration the IdP refuses ------------------------------------------------------------

COMMANDS = [
    pytest.param("db upgrade", None, id="db-upgrade"),
    pytest.param("users create bob --password-stdin", PASSWORD, id="users-create"),
    pytest.param(
        "clients create --name X --redirect-uri https://rp.example/cb", None, id="clients-create"
    ),
    pytest.param("clients list --json", None, id="clients-list"),
    pytest.param("clients delete some-id", None, id="clients-delete"),
]


@pytest.mark.parametrize(("command", "stdin"), COMMANDS)
def test_a_plain_http_issuer_stops_every_command(idp, command, stdin):
    result = idp(command, input=stdin, env={"IDP_ISSUER": "http://example.com"})
    assert result.returncode == 1
    assert result.stdout == ""
    # The reason is the last line printed, naming the variable and https.
    assert result.stderr.splitlines()[-1].endswith(HTTPS_MESSAGE)
    assert idp.rows("SELECT count(*) FROM users") == [(0,)]
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]


@pytest.mark.parametrize(
    ("command", "stdin", "env", "message"),
    [
        *(
            pytest.param(
                *p.values,
                {"IDP_ISSUER": "http://example.com"},
                HTTPS_MESSAGE,
                id=f"{p.id}-http-issuer",
            )
            for p in COMMANDS
        ),
        pytest.param(
            "clients list",
            None,
            {"IDP_ISSUER": "https://id.example.com/?x=1"},
            "IDP_ISSUER must not have a query or a fragment",
            id="issuer-query",
        ),
        pytest.param(
            "clients list",
            None,
            {"IDP_LOGIN_REQUEST_TTL": "2m"},
            "IDP_LOGIN_REQUEST_TTL must be a whole number of seconds, not '2m'",
            id="ttl-not-int",
        ),
        pytest.param(
            "clients list",
            None,
            {"IDP_CODE_TTL": "-5"},
            "IDP_CODE_TTL must not be negative, not -5",
            id="ttl-negative",
        ),
    ],
)
def test_a_refused_configuration_is_one_clear_line_not_a_traceback(
    idp, command, stdin, env, message
):
    result = idp(command, input=stdin, env=env)
    assert failed(result) == f"error: {message}\n"


# idp devices ----------------------------------------------------------------------------------


@pytest.fixture
def phones(idp):
    """User bob with two phones (rows as enrollment writes them)."""
    ok(idp("users create bob --password-stdin", input=PASSWORD + "\n"))
    with sqlite3.connect(idp.database) as connection:
        for i, name in enumerate(["Bob's phone", "Old tablet"]):
            connection.execute(
                "INSERT INTO devices (device_id, user_id, name, public_jwk, key_thumbprint,"
                " created_at, last_used_at, enrolled_via) VALUES (?, 1, ?, '{}', ?, ?, ?, ?)",
                (f"dev_{i}", name, f"thumb{i}", f"2026-11-2{i} 10:00:00",
                 "2026-11-25 09:30:00" if i == 0 else None, "password" if i == 0 else None),
            )  # fmt: skip
    return idp


def test_devices_list(phones):
    rows = json.loads(ok(phones("devices list bob --json")))
    assert rows == [
        {
            "device_id": "dev_0",
            "name": "Bob's phone",
            "created_at": "2026-11-20T10:00:00Z",
            "last_used_at": "2026-11-25T09:30:00Z",
            "revoked_at": None,
            "enrolled_via": "password",
        },
        {
            "device_id": "dev_1",
            "name": "Old tablet",
            "created_at": "2026-11-21T10:00:00Z",
            "last_used_at": None,
            "revoked_at": None,
            "enrolled_via": None,  # enrolled before this was recorded
        },
    ]
    text = ok(phones("devices list bob")).splitlines()
    assert text[0].startswith("dev_0  active")
    assert "last used 2026-11-25T09:30:00Z" in text[0] and "via password " in text[0]
    assert text[1].endswith("Old tablet") and "via unrecorded " in text[1]
    assert "last used never" in text[1]


def test_devices_revoke(phones):
    assert ok(phones("devices revoke dev_1")) == "revoked dev_1 (Old tablet)\n"
    assert ok(phones("devices revoke dev_1")) == "dev_1 (Old tablet) was already revoked\n"
    rows = json.loads(ok(phones("devices list bob --json")))
    assert rows[0]["revoked_at"] is None
    assert rows[1]["revoked_at"].endswith("Z")
    assert "revoked 20" in ok(phones("devices list bob")).splitlines()[1]


def test_devices_unknown(phones):
    assert failed(phones("devices revoke dev_nope")) == "error: no device 'dev_nope'\n"
    assert failed(phones("devices list nobody")) == "error: no user 'nobody'\n"
    assert ok(phones("users create carol --password-stdin", input=PASSWORD + "\n"))
    assert ok(phones("devices list carol")) == "carol has no enrolled phone\n"


# idp keys -------------------------------------------------------------------------------------


def test_keys_list_and_rotate(idp):
    first = json.loads(ok(idp("keys list --json")))  # made on first use
    assert sorted((k["alg"], k["state"]) for k in first) == [
        ("ES256", "signing"),
        ("RS256", "signing"),
    ]
    out = ok(idp("keys rotate --alg RS256"))
    assert re.fullmatch(r"RS256: new key \S+, signing from \S+Z\n", out)
    new_kid = out.split()[3].rstrip(",")
    after = {k["kid"]: k for k in json.loads(ok(idp("keys list --json")))}
    assert after[new_kid]["state"] == "next"  # published now, signs in IDP_KEY_PUBLISH_AHEAD
    old_rs = next(k for k in first if k["alg"] == "RS256")["kid"]
    assert after[old_rs]["state"] == "signing"
    assert after[old_rs]["retired_at"].endswith("Z")
    text = ok(idp("keys list"))
    assert f"{new_kid}  RS256  next" in text


def test_keys_rotate_refuses_an_unknown_algorithm(idp):
    result = idp("keys rotate --alg HS256")
    assert result.returncode == 2
    assert "HS256" in result.stderr


# hostile text in what the commands print --------------------------------------------------

#: A name as an attacker would choose it: an ANSI escape (clear the screen), a newline
#: followed by a forged audit line, a C1 control, DEL and a right-to-left override.
HOSTILE = "evil\x1b[2J\n2026-11-25T09:00:00Z  login.approved         user=alice\x9b\x7f\u202etxt"
HOSTILE_SHOWN = (
    "evil\\x1b[2J\\n2026-11-25T09:00:00Z  login.approved         user=alice\\x9b\\x7f\\u202etxt"
)


def assert_clean(text: str) -> None:
    """Nothing a terminal would obey: no control character but the line ends."""
    assert not [c for c in text if c != "\n" and (ord(c) < 32 or 0x7F <= ord(c) <= 0x9F)]
    assert "\u202e" not in text
    assert not any(line.startswith("2026-11-25T09:00:00Z") for line in text.splitlines())


@pytest.fixture
def hostile(phones):
    """Rows holding hostile text, as an old version (or a direct write) could have left."""
    with sqlite3.connect(phones.database) as connection:
        connection.execute("UPDATE devices SET name = ? WHERE device_id = 'dev_0'", (HOSTILE,))
        connection.execute(
            "INSERT INTO audit_events (at, event, username, device_id, client_id, ip, detail)"
            " VALUES ('2026-11-25 10:00:00', 'device.enroll_refused', ?, ?, ?, ?, ?)",
            (HOSTILE, HOSTILE, HOSTILE, HOSTILE, json.dumps({"name": HOSTILE})),
        )
    ok(phones("clients create --name Shop --redirect-uri https://shop.example/cb"))
    with sqlite3.connect(phones.database) as connection:
        connection.execute("UPDATE clients SET name = ?", (HOSTILE,))
    return phones


def test_audit_escapes_control_characters(hostile):
    text = ok(hostile("audit"))
    assert_clean(text)
    [line] = [line for line in text.splitlines() if "device.enroll_refused" in line]
    assert f"user={HOSTILE_SHOWN} device={HOSTILE_SHOWN}" in line
    [row] = [json.loads(r) for r in ok(hostile("audit --json")).splitlines() if "refused" in r]
    assert row["user"] == HOSTILE and row["detail"] == {"name": HOSTILE}  # JSON stays exact


def test_devices_list_escapes_control_characters(hostile):
    text = ok(hostile("devices list bob"))
    assert_clean(text)
    assert text.splitlines()[0].endswith(HOSTILE_SHOWN)
    assert json.loads(ok(hostile("devices list bob --json")))[0]["name"] == HOSTILE


def test_clients_list_escapes_control_characters(hostile):
    text = ok(hostile("clients list"))
    assert_clean(text)
    assert f"  confidential  {HOSTILE_SHOWN}  https://shop.example/cb\n" in text
    assert json.loads(ok(hostile("clients list --json")))[0]["name"] == HOSTILE


def test_devices_revoke_escapes_control_characters(hostile):
    text = ok(hostile("devices revoke dev_0"))
    assert_clean(text)
    assert text == f"revoked dev_0 ({HOSTILE_SHOWN})\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("'bob\n'", "error: usernames are 1-150 letters, digits or _ . @ -\n"),
        ("'bob\x1b[2J'", "error: usernames are 1-150 letters, digits or _ . @ -\n"),
        ("bob --name 'Bob\u202eboB'", "error: a name must not contain control characters\n"),
        ("bob --email 'b\x1b@x.example'", "error: 'b\\x1b@x.example' is not an email address\n"),
    ],
)
def test_control_characters_in_a_new_user_are_refused(idp, args, message):
    result = idp(f"users create {args} --password-stdin", input=PASSWORD + "\n")
    assert failed(result) == message
    assert idp.rows("SELECT count(*) FROM users") == [(0,)]


def test_control_characters_in_a_client_name_are_refused(idp):
    result = idp("clients create --name 'Shop\nclient_id: x' --redirect-uri https://s.example/cb")
    assert failed(result) == "error: a client name must not contain control characters\n"
    assert idp.rows("SELECT count(*) FROM clients") == [(0,)]
