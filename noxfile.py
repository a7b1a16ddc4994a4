"""The test suite on each supported Airflow minor, each in its own virtualenv.

    nox -s tests-3.0 tests-3.3     # what scripts/test.sh (and CI) runs: the oldest and the newest
    nox -t tests                   # every minor, 3.0 to 3.3
    nox -s tests-3.2 -- tests/hooks -x   # arguments after -- go to pytest

The newest minor's session also runs the gates (ruff, ruff format --check, mypy), since mypy
checks against the newest Airflow's types.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
# A second run reuses the venvs (pip still brings the package and pins up to date).
nox.options.reuse_venv = "yes"


# The release of each minor that the suite runs on, with the pins that minor needs.
# Why each pin: the README's "Airflow versions" section.
AIRFLOW: dict[str, list[str]] = {
    "3.0": [
        "apache-airflow==3.0.6",
        "fastapi<0.118",
        "cadwyn<6",
        "universal-pathlib<0.3",
        "apache-airflow-providers-celery<3.14",
    ],
    "3.1": ["apache-airflow==3.1.8"],
    "3.2": ["apache-airflow==3.2.2", "fastapi<0.137", "svcs<26"],
    "3.3": ["apache-airflow==3.3.2"],
}
ORDERED = sorted(AIRFLOW, key=lambda minor: tuple(int(part) for part in minor.split(".")))
OLDEST, NEWEST = ORDERED[0], ORDERED[-1]


def suite(airflow: str) -> None:
    def tests(session: nox.Session) -> None:
        session.install("--upgrade", "pip")
        session.install("-e", ".[test]", *AIRFLOW[airflow])
        if airflow == NEWEST:
            session.run("ruff", "check", ".")
            session.run("ruff", "format", "--check", ".")
            session.run("mypy")
        session.run("python", "-m", "pytest", *session.posargs)

    tests.__doc__ = f"The suite on Airflow {airflow} ({', '.join(AIRFLOW[airflow])})"
    nox.session(name=f"tests-{airflow}", tags=["tests"])(tests)


for minor in AIRFLOW:
    suite(minor)

nox.options.sessions = [f"tests-{OLDEST}", f"tests-{NEWEST}"]
