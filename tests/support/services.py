"""Real processes for the operations tests: redis-server, nginx and PostgreSQL (``getgpt serve``:
serve_process.py).

Each runs on a free loopback port with its files in a temporary directory, and is stopped by its
PID (never by name). redis-server, nginx and postgresql come from Debian (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from . import processes
from .servers import free_port
from .waiting import wait_until

__all__ = ["Nginx", "Postgres", "Redis", "find"]

# Where Debian puts what the tests need; PATH first, for machines that have them elsewhere.
_SEARCH = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


def find(name: str) -> str:
    """The path of program ``name``; fails the test when it is not installed (.ci/run installs it)."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in _SEARCH if (Path(d) / name).is_file()), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install the package (.ci/run does)")
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, limit: float = 20.0) -> None:
    wait_until(lambda: process.poll() is not None or _listening(port), limit, f"{what} listening on {port}")
    if process.poll() is not None:
        raise RuntimeError(f"{what} exited with {process.returncode}")


class _Process:
    """A child process stopped by its PID on exit."""

    process: subprocess.Popen[bytes]

    def stop(self, sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
        processes.stop(self.process, wait, sig)

    def __enter__(self) -> _Process:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stop()


class Redis(_Process):
    """redis-server with no persistence, on a free loopback port, in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="getgpt-redis-")
        self.port = free_port()
        self.start()

    def start(self) -> None:
        """Start it (again, on the same port: a restarted Redis comes back empty)."""
        args = [
            find("redis-server"),
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.process, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# The parts of deploy/nginx.conf that decide how a request passes (the request id map, the body
# limit, the whole "location /" block) are read from it, so the tests run what is shipped. The rest
# is this machine's: Debian's nginx (1.22) has no "resolve", and there is no Docker DNS here.
_DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def _block(conf: str, opening: str) -> str:
    """The block of ``conf`` that starts with the line ``opening`` (its braces matched), as text."""
    start = conf.index(opening)
    depth = 0
    for at in range(conf.index("{", start), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[at], 0)
        if depth == 0:
            return conf[start : at + 1]
    raise ValueError(f"{opening!r}: no closing brace in {_DEPLOYED}")


def _nginx_conf(directory: str, port: int, backends: Sequence[str]) -> str:
    deployed = _DEPLOYED.read_text()
    body_limit = next(line.strip() for line in deployed.splitlines() if "client_max_body_size" in line)
    servers = "\n".join(f"server {backend} max_fails=0;" for backend in backends)
    return f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream getgpt {{
{servers}
    }}
{_block(deployed, "map $http_x_request_id")}
    server {{
        listen 127.0.0.1:{port};
        {body_limit}
{_block(deployed, "location / {")}
    }}
}}
"""


class Nginx(_Process):
    """nginx in front of ``backends`` (``host:port``), round robin, handling requests as deploy/nginx.conf."""

    def __init__(self, backends: Sequence[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="getgpt-nginx-")
        # Run as root, nginx's worker is nobody: it must reach the temporary files it makes here.
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        conf = Path(self.dir) / "nginx.conf"
        conf.write_text(_nginx_conf(self.dir, self.port, backends))
        self.process = subprocess.Popen(
            [find("nginx"), "-c", str(conf), "-p", self.dir, "-e", f"{self.dir}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self.process, "nginx")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def errors(self) -> str:
        """What nginx wrote to its error log so far (for a failing test's message)."""
        try:
            return (Path(self.dir) / "error.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no error log: {exc})"

    def stop(self, sig: int = signal.SIGQUIT, wait: float = 20.0) -> None:
        # SIGQUIT: nginx's graceful stop (its worker goes with it).
        super().stop(sig, wait)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them per version under /usr/lib/postgresql."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_of, reverse=True)
    return found[0] if found else find(name)


def _version_of(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class Postgres(_Process):
    """A PostgreSQL server of its own: ``initdb`` into a temporary directory, then ``postgres`` in
    the foreground on a free loopback port (its PID is the server's), trusting local connections.

    initdb refuses to run as root, so as root (CI) both run as Debian's ``postgres`` user, which
    is given the temporary directory.
    """

    USER = "getgpt"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="getgpt-postgres-")
        self.data = str(Path(self.dir) / "data")
        self.port = free_port()
        self._as: dict[str, str] = {}
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = {"user": "postgres", "group": str(owner.pw_gid)}
        subprocess.run(
            [_postgres_bin("initdb"), "-D", self.data, "-U", self.USER, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._kwargs(),
        )  # fmt: skip
        self.start()

    def _kwargs(self) -> dict[str, object]:
        # The C locale, whatever the user's: initdb refuses a LANG the machine has not generated
        # (the suite's second run is under ru_RU.UTF-8, which a fresh machine lacks).
        own: dict[str, object] = {"env": {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}}
        if not self._as:
            return own
        return {**own, "user": self._as["user"], "group": int(self._as["group"]), "cwd": self.dir}

    def start(self) -> None:
        """Start it (again, on the same port and data: a restarted server keeps what it had)."""
        args = [
            _postgres_bin("postgres"), "-D", self.data, "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._kwargs()
        )  # type: ignore[call-overload]
        _wait_port(self.port, self.process, "postgres")
        # Listening is not yet taking queries ("the database system is starting up").
        ready = [_postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER]
        wait_until(
            lambda: self.process.poll() is not None or subprocess.run(ready, check=False).returncode == 0,
            30,
            "postgres taking queries",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {self.process.returncode}")

    def stop(self, sig: int = signal.SIGINT, wait: float = 20.0) -> None:
        # SIGINT: PostgreSQL's fast shutdown (clients are disconnected, nothing is lost).
        super().stop(sig, wait)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        self._made = getattr(self, "_made", 0) + 1
        name = f"test{self._made}"
        subprocess.run(
            [_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, name],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
