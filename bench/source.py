"""Which QR-IdP code is measured: the working tree, or a clean export of a git revision.

Other people edit the working tree while a benchmark runs; ``--ref HEAD`` measures a fixed
revision instead: ``git archive`` into a temporary folder, put first on ``sys.path`` (this
process) and ``PYTHONPATH`` (every ``idp`` command and ``idp serve``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: what ``use_revision`` exported, e.g. ``06f33df (git archive of HEAD)``; None: working tree
measured: str | None = None


def ref_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--ref REV`` or ``--ref=REV``, if given."""
    for i, arg in enumerate(argv):
        if arg == "--ref" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--ref="):
            return arg.split("=", 1)[1]
    return None


def use_revision(ref: str) -> str:
    """Export ``ref`` and make it the code that is imported and served; returns its id."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix=f"idp-bench-src-{commit}-"))
    atexit.register(shutil.rmtree, root, True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    paths = [str(root), str(root / "clients")]
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    global measured
    measured = f"{commit} (git archive of {ref})"
    return measured
