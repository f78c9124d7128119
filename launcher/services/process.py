"""A child process with a log file, started and stopped cleanly, and waiting for readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartupError(RuntimeError):
    """A server did not become ready; the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ManagedProcess:
    """A server process started by CineSync; output goes to ``log_path``."""

    def __init__(
        self, name: str, command: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # Ctrl-C in the terminal reaches CineSync, which stops us in order
            )

    def restart(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 15 s) and start the same command again (same
        arguments, hence the same ports). After its leader exited, what is left of the group is
        killed at once: orphaned (Triton's python stubs), it has nothing to finish, and one that
        ignores SIGTERM would hold the restart 15 s."""
        if self.running():
            self.stop()
        else:
            self.stop(timeout=0.0)
        self.popen = self._spawn()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StartupError(
                    f"{self.name} exited with code {self.popen.returncode}; log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):  # any failure of the probe means 'not ready yet'
                if ready():
                    return
            time.sleep(interval)
        self.stop()
        raise StartupError(f"{self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``. The group is
        signalled even when its leader already exited, so its children (Triton's python stubs) go too."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
            while alive(self.popen.pid, group=True) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not alive(self.popen.pid, group=True):
                return


def alive(pid: int, *, group: bool = False) -> bool:
    """Whether process ``pid`` (or, with ``group``, any process of group ``pid``) still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    return True


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, arguments separated by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""

