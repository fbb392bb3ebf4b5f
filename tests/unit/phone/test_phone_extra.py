"""Without the ``phone`` extra (a plain ``pip install qr-idp``), ``idp-phone`` and ``idp demo``
say what to install instead of failing with an ImportError traceback.

A library is made unimportable the way Python itself allows: ``sys.modules[name] = None``.
"""

import importlib
import sys

import pytest
from click.testing import CliRunner

from idp.cli import main as idp
from idp_phone import extra


def hint(command: str, missing: str) -> str:
    return (
        f"{command} needs the phone extra ({missing} missing): "
        "install qr-idp[phone], e.g. pip install 'qr-idp[phone]'\n"
    )


@pytest.mark.parametrize(
    ("library", "importer"), [("requests", "idp_phone.api"), ("zxingcpp", "idp_phone.qr")]
)
def test_the_made_up_missing_library_breaks_the_phone_app(monkeypatch, library, importer):
    """What the tests below stand in for: without the library, the import fails."""
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.delitem(sys.modules, importer, raising=False)
    with pytest.raises(ImportError):
        importlib.import_module(importer)


@pytest.mark.parametrize("library", extra.PHONE_MODULES)
def test_idp_phone_without_the_extra_says_what_to_install(monkeypatch, capsys, library):
    monkeypatch.setitem(sys.modules, library, None)
    with pytest.raises(SystemExit) as exited:
        extra.main(["whoami"])
    assert exited.value.code == 2
    assert capsys.readouterr() == ("", hint("idp-phone", library))


def test_every_missing_library_is_named(monkeypatch):
    for library in ("zxingcpp", "PIL"):
        monkeypatch.setitem(sys.modules, library, None)
    assert extra.missing_phone_modules() == ["zxingcpp", "PIL"]


def test_idp_demo_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    result = CliRunner().invoke(idp, ["demo", "--port", "1", "--rp-port", "2"])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", hint("idp demo", "PIL"))


def test_idp_phone_with_the_extra_runs_the_command_line(capsys):
    assert extra.missing_phone_modules() == []
    with pytest.raises(SystemExit) as exited:
        extra.main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: idp-phone")
