"""The one rule for "which container engine runs our images here", for the Makefile and Python.

Docker only when its engine *answers* (``docker info`` succeeds): Debian's ``docker.io`` client on
PATH with no daemon behind it is not an engine. Otherwise podman (with runc, and debootstrap for a
base image where no hub can be pulled from). ``CONTAINER_ENGINE=docker|podman`` overrides.

Standard library only: ``make setup`` runs it with the system's ``python3`` before the venv exists,
to decide which Debian packages to install; ``scripts.containers.engine()`` calls ``choose()``.

    python3 scripts/container_engine.py            # docker | podman
    python3 scripts/container_engine.py packages   # Debian packages still missing for it

Example:
    >>> choose({"CONTAINER_ENGINE": "podman"})
    'podman'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

ENGINES = ("docker", "podman")
# What the podman path needs from Debian: the engine, the OCI runtime our containers.conf names
# (crun refuses this sandbox's hybrid cgroups), and debootstrap for the local base image.
PODMAN_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
DOCKER_INFO_TIMEOUT_S = 20.0


def docker_answers(env: Mapping[str, str] | None = None) -> bool:
    """Whether a Docker engine answers ``docker info`` (a client alone does not)."""
    environ = dict(os.environ if env is None else env)
    exe = shutil.which("docker", path=environ.get("PATH"))
    if exe is None:
        return False
    try:
        probe = subprocess.run([exe, "info"], capture_output=True, env=environ, check=False,
                               timeout=DOCKER_INFO_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def choose(env: Mapping[str, str] | None = None) -> str:
    """``docker`` or ``podman``: the engine every container command here uses.

    Podman is the answer whenever no Docker engine answers, installed or not yet: ``make setup``
    installs what ``missing_packages`` names, and the callers say so when it is still missing.
    """
    environ = os.environ if env is None else env
    chosen = environ.get("CONTAINER_ENGINE", "")
    if chosen in ENGINES:
        return chosen
    return "docker" if docker_answers(environ) else "podman"


def missing_packages(env: Mapping[str, str] | None = None) -> list[str]:
    """Debian packages to install for the chosen engine (none for a Docker engine that answers)."""
    if choose(env) == "docker":
        return []
    path = (os.environ if env is None else env).get("PATH")
    return [pkg for exe, pkg in PODMAN_PACKAGES.items() if shutil.which(exe, path=path) is None]


def main(argv: list[str]) -> int:
    if argv[1:] == ["packages"]:
        print(" ".join(missing_packages()))
    elif argv[1:] == []:
        print(choose())
    else:
        print(f"usage: {argv[0]} [packages]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
