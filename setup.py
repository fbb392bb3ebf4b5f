"""The package layout that pyproject.toml's ``packages.find`` cannot express.

Everything else is declared in pyproject.toml. The top-level ``migrations/`` folder stays
where developers run ``alembic`` from, and is installed as ``idp._migrations`` so that
``idp db upgrade`` finds it in a wheel as well as in a checkout (idp/migrate.py).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["idp", "idp.*"]),
        *find_namespace_packages("clients", include=["idp_phone*", "demo_rp*", "demo_device*"]),
        "idp._migrations",
        "idp._migrations.versions",
    ],
    package_dir={
        "idp._migrations": "migrations",
        "idp_phone": "clients/idp_phone",
        "demo_rp": "clients/demo_rp",
        "demo_device": "clients/demo_device",
    },
)
