"""Where PostgreSQL's server binaries are, and who may run them: the machine side of
:mod:`devstack.postgres`.

Exceptions::

    RuntimeError
     └── PostgresError          initdb, the bootstrap, or the server user failed
          └── PostgresNotFound  no initdb/postgres here (also a FileNotFoundError)

Debian keeps the server binaries off PATH, under ``/usr/lib/postgresql/<version>/bin``
(``pg_config --bindir`` names the client's folder, which has no initdb). postgres refuses to run
as root, so under root the server runs as a dedicated system user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

BIN_DIR_ENV = "POSTGRES_BIN_DIR"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
OS_USER = "yoloserve-pg"
INSTALL_HINT = "`make setup` installs it (Debian's postgresql package)"
_PR_SET_PDEATHSIG = 1


class PostgresError(RuntimeError):
    """initdb or the server's bootstrap failed."""


class PostgresNotFound(PostgresError, FileNotFoundError):
    """No PostgreSQL server binaries (initdb, postgres) on this machine."""


def find_bin_dir(
    env: Mapping[str, str] | None = None, roots: tuple[Path, ...] = (DEBIAN_ROOT,)
) -> Path:
    """The folder holding ``initdb`` and ``postgres``.

    Args:
        env: environment to read ``POSTGRES_BIN_DIR`` from (``os.environ`` by default).
        roots: folders laid out like Debian's ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        PostgresNotFound: no such folder; the message says how to install one.
    """
    env = os.environ if env is None else env

    def complete(folder: Path) -> bool:
        return (folder / "initdb").is_file() and (folder / "postgres").is_file()

    if env.get(BIN_DIR_ENV):
        folder = Path(env[BIN_DIR_ENV])
        if complete(folder):
            return folder
        raise PostgresNotFound(
            f"{BIN_DIR_ENV}={folder} holds no initdb and postgres (unset it to search "
            f"{DEBIAN_ROOT}; {INSTALL_HINT})"
        )
    found = [d for root in roots for d in root.glob("*/bin") if complete(d)]
    if found:
        # "15" > "9.6" as numbers, not as strings.
        return max(found, key=lambda d: [int(p) for p in re.findall(r"\d+", d.parent.name)])
    on_path = shutil.which("initdb", path=env.get("PATH"))
    if on_path and complete(Path(on_path).parent):
        return Path(on_path).parent
    raise PostgresNotFound(
        f"PostgreSQL server binaries (initdb, postgres) not found in {BIN_DIR_ENV}, "
        f"{', '.join(f'{r}/*/bin' for r in roots)} or on PATH: {INSTALL_HINT}"
    )


def ensure_os_user(name: str = OS_USER) -> pwd.struct_passwd:
    """The system user the server runs as under root, created (``useradd --system``) if missing.

    Raises:
        PostgresError: it is missing and could not be created.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    made = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )
    try:  # a concurrent run may have created it first: its useradd failing is fine
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(f"could not create system user {name}: {made.stderr.strip()}") from None


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends.

    Set after Popen's uid switch (which runs before ``preexec_fn``): a uid change clears it.
    """
    def preexec() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before the line above: too late
            os._exit(1)

    return preexec


def check_reachable(folder: Path, owner: pwd.struct_passwd) -> None:
    """The server user must be able to walk down to ``folder`` (root's 0700 folders block it)."""
    for parent in folder.parents:
        st = parent.stat()
        if st.st_uid == owner.pw_uid or st.st_mode & 0o001 or (
            st.st_gid == owner.pw_gid and st.st_mode & 0o010
        ):
            continue
        raise PostgresError(
            f"{parent} (mode {oct(st.st_mode & 0o777)}) bars user {owner.pw_name} from "
            f"{folder}: put the cluster under a folder others may enter, such as /tmp"
        )
