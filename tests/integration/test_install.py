"""The package as an operator installs it (docs/deploying.md): a wheel built from this
checkout, installed into a fresh virtual environment, run from a folder that is not the
checkout. ``idp db upgrade`` must find the migrations, ``idp serve`` its templates, static
files and translations, all from the installed package.

It is the server install, ``qr-idp[postgres]`` without the ``phone`` extra, so it also
proves that the server needs none of the phone app's libraries. The dependencies are pinned
by the checkout's constraints.txt, as ``make install`` pins them, so pip takes them from its
cache: the same versions the rest of the suite tested, and no minutes spent resolving.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from cluster import wait_until
from idp.migrate import alembic_config
from support import free_port, postgres_database

CHECKOUT = Path(__file__).resolve().parents[2]
# What the build must not see: a developer's environment, caches, earlier builds.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "instance"
)
# Files the installed package reads at run time: checkout folder -> folder in the wheel.
PACKAGE_DATA = {
    "migrations": "idp/_migrations",
    "idp/templates": "idp/templates",
    "idp/static": "idp/static",
    "idp/translations": "idp/translations",
    "clients/demo_rp/templates": "demo_rp/templates",
}
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@dataclass
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # outside the checkout: nothing there to import by accident

    @property
    def idp(self) -> str:
        return str(self.venv / "bin" / "idp")

    def env(self, **settings: str) -> dict[str, str]:
        """A clean environment: no IDP_* of the caller, no path into the checkout."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IDP_") and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["IDP_INSTANCE_PATH"] = str(self.workdir / "instance")
        # PostgreSQL (a shared database) needs a secret set, as on every host of a cluster.
        env["IDP_SECRET_KEY"] = "test-install-secret-key"
        return env | settings

    def run(self, *args: str, **settings: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args),
            cwd=self.workdir,
            env=self.env(**settings),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def run(*args: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (args, result.stdout[-4000:], result.stderr[-4000:])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel of this checkout, installed with its dependencies into a fresh venv."""
    tmp = tmp_path_factory.mktemp("install")
    # Built from a copy: setuptools builds in the source tree, and a stale build/ folder
    # there could put files into the wheel that the checkout no longer has.
    source = tmp / "source"
    shutil.copytree(CHECKOUT, source, ignore=NOT_SOURCE)
    dist = tmp / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=tmp)
    (wheel,) = dist.glob("qr_idp-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp)
    constraints = CHECKOUT / "constraints.txt"
    # No bytecode compiled ahead for every installed module: the few that run compile then.
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "-c", constraints,
        f"{wheel}[postgres]", cwd=tmp)  # fmt: skip
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    yield Installed(wheel=wheel, venv=venv, workdir=workdir)


def test_the_wheel_carries_every_file_the_package_reads(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = set()
    for folder, packaged in PACKAGE_DATA.items():
        for path in (CHECKOUT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                expected.add(f"{packaged}/{path.relative_to(CHECKOUT / folder).as_posix()}")
    assert expected - names == set()
    assert any(name.endswith("messages.mo") for name in expected)
    assert "idp/_migrations/env.py" in expected


def test_the_installed_package_is_the_one_that_runs(installed):
    result = installed.run(
        str(installed.venv / "bin" / "python"), "-c", "import idp.migrate as m; print(m.__file__)"
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.venv)


def test_the_server_install_has_none_of_the_phone_libraries(installed):
    script = "import importlib.util as u; print([m for m in MODULES if u.find_spec(m)])"
    result = installed.run(
        str(installed.venv / "bin" / "python"),
        "-c",
        script.replace("MODULES", repr(["requests", "zxingcpp", "PIL"])),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


@pytest.mark.parametrize(
    ("command", "name"),
    [(["idp-phone", "whoami"], "idp-phone"), (["idp", "demo", "--port", "1"], "idp demo")],
)
def test_phone_commands_of_a_server_install_say_what_to_install(installed, command, name):
    result = installed.run(str(installed.venv / "bin" / command[0]), *command[1:])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"{name} needs the phone extra (requests, zxingcpp, PIL missing): "
        "install qr-idp[phone], e.g. pip install 'qr-idp[phone]'\n"
    )


def test_db_upgrade_from_the_wheel_on_sqlite(installed):
    database = installed.workdir / "upgrade.sqlite3"
    for _ in range(2):  # the second run finds nothing to do
        result = installed.run(
            installed.idp, "db", "upgrade", IDP_DATABASE_URL=f"sqlite:///{database}"
        )
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == "database is up to date\n"
    with sqlite3.connect(database) as connection:
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(HEAD,)]


@pytest.mark.postgres
def test_db_upgrade_from_the_wheel_on_postgresql(installed):
    with postgres_database() as url:
        result = installed.run(installed.idp, "db", "upgrade", IDP_DATABASE_URL=url)
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == "database is up to date\n"
        engine = create_engine(url)
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        engine.dispose()
    assert [tuple(row) for row in versions] == [(HEAD,)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, installed) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{installed.workdir / 'serve.sqlite3'}"
    else:
        with postgres_database() as url:
            yield url


def test_serve_from_the_wheel(installed, database_url):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = {
        "IDP_DATABASE_URL": database_url,
        "IDP_ISSUER": issuer,
        "IDP_SECRET_KEY": "installed-wheel",
        "IDP_LOG_FORMAT": "text",
    }
    upgraded = installed.run(installed.idp, "db", "upgrade", **settings)
    assert upgraded.returncode == 0, upgraded.stderr
    log = installed.workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [installed.idp, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=installed.workdir,
            env=installed.env(**settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert server.poll() is None, log.read_text()
            return requests.get(f"{issuer}/readyz", timeout=2).status_code == 200

        wait_until(ready, 120, f"idp serve ready:\n{log.read_text()}")
        discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        assert discovery.status_code == 200
        assert discovery.json()["issuer"] == issuer
        # The package's static files and compiled translations, served from the venv.
        script = requests.get(f"{issuer}/static/login.js", timeout=10)
        assert script.status_code == 200
        assert script.text == (CHECKOUT / "idp" / "static" / "login.js").read_text()
        home = requests.get(f"{issuer}/", headers={"Accept-Language": "zh-CN"}, timeout=10)
        assert home.status_code == 200
        assert "用手机登录" in home.text  # "Sign in with your phone", from messages.mo
    finally:
        server.terminate()
        server.wait(timeout=30)
