"""One process per memory store: several processes serving one app are refused (K9).

The memory store, its locks and the reply cache live in one process. When several
processes serve one app (``uvicorn --workers 3``, gunicorn with uvicorn workers, a
server that forks), each would see only its own calls. The number of processes is
not always configured (``RTCONTROL_WORKERS``), so it is detected:

processes that serve one app share its server socket. For each server socket this
process holds (``/proc/self/fd``; a TCP or unix stream socket that listens, or is
bound and not connected: ``uvicorn --workers`` binds in the supervisor and each
worker listens only after its start-up, so ``/proc/net/tcp``, which omits bound
sockets, would miss it), a non-blocking ``flock`` is taken on
``<tmp>/rtcontrol-<uid>/socket-<inode>.lock`` and kept for the life of the
process. If another live process holds one, this process refuses to serve. A
crashed holder releases its lock with its last file descriptor, so a restarted
worker is never refused by a dead one; socket inodes are not reused, so a lock
never outlives the socket it names in practice.

Not detected: processes that each open their own socket (``SO_REUSEPORT``, several
ports behind a proxy) and non-Linux systems (skipped with a debug log). A shared
store (``store.shared``, e.g. Redis) skips the check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
import tempfile
from pathlib import Path

from ..logs import app_log
from .ports import StoreProbe

__all__ = [
    "EPOCH",
    "ProcessGate",
    "claim_listeners",
    "runtime_dir",
    "server_sockets",
    "split_state_message",
]

#: Bumped in a forked child: per-process checks made before the fork are void there.
EPOCH = 0

#: Server sockets this process has claimed: inode -> (lock file descriptor, path).
_held: dict[int, tuple[int, Path]] = {}

_SWEEP_LIMIT = 200  # stale lock files removed per claim, at most


def split_state_message(who: str) -> str:
    """The refusal, shared with the ``RTCONTROL_WORKERS`` check."""
    return (
        f"{who} cannot share the memory store: each would see only its own calls. "
        "Set RTCONTROL_STORE_URL=redis://... or run one worker."
    )


def runtime_dir() -> Path:
    """Where the lock files live: private to the user, shared by their processes."""
    return Path(tempfile.gettempdir()) / f"rtcontrol-{os.getuid()}"


def claim_listeners() -> str | None:
    """Claim this process's server sockets; the refusal message if another process
    already serves one of them, else None (also when the check cannot run)."""
    if sys.platform != "linux" or not os.path.isdir("/proc/self/fd"):
        app_log.debug("not checking for other processes serving this app: needs Linux /proc")
        return None
    try:
        return _claim()
    except OSError as exc:
        app_log.warning("could not check whether other processes serve this app: %s", exc)
        return None


def _claim() -> str | None:
    mine = server_sockets()
    for inode in [i for i in _held if i not in mine]:  # sockets closed since: let go
        _release(inode)
    fresh = {inode: what for inode, what in mine.items() if inode not in _held}
    if not fresh:
        return None
    directory = _private_dir(runtime_dir())
    if directory is None:
        return None
    for inode, what in sorted(fresh.items()):
        path = directory / f"socket-{inode}.lock"
        fd = _try_lock(path)
        if fd is None:
            holder = _holder(path)
            other = f"process {holder}" if holder else "another process"
            return (
                f"several processes serve this app: this one and {other} share the "
                f"socket {what} (uvicorn --workers, gunicorn workers or a fork); "
                + split_state_message("worker processes")
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[inode] = (fd, path)
    _sweep(directory)
    return None


def server_sockets() -> dict[int, str]:
    """This process's server sockets: inode -> description (``TCP 127.0.0.1:8000``)."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            inode = os.fstat(fd).st_ino
            what = _describe_server(fd)
        except (OSError, ValueError):  # closed meanwhile (the listing's own descriptor)
            continue
        if what is not None:
            found[inode] = what
    return found


def _describe_server(fd: int) -> str | None:
    """``fd``'s address if it is a server socket: stream, bound, not connected."""
    duplicate = os.dup(fd)  # closing the duplicate leaves ``fd`` open
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        raise
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES:
            return None
        address = sock.getsockname()
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            try:
                sock.getpeername()
            except OSError:  # not connected: a server socket before listen()
                pass
            else:
                return None
        if sock.family == socket.AF_UNIX:
            name = address.decode(errors="replace") if isinstance(address, bytes) else address
            return f"unix {name}" if name else None
        host, port = address[0], address[1]
        if not port:
            return None
        return f"TCP [{host}]:{port}" if sock.family == socket.AF_INET6 else f"TCP {host}:{port}"
    finally:
        sock.close()


_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_UNIX", -1)})


def _private_dir(path: Path) -> Path | None:
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        app_log.warning("cannot check for other processes serving this app: %s", exc)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        app_log.warning(
            "cannot check for other processes serving this app: %s is not a private "
            "directory of this user",
            path,
        )
        return None
    return path


def _try_lock(path: Path) -> int | None:
    """A descriptor holding ``path``'s lock, or None when another process holds it.

    Checks after locking that ``path`` still names the locked file, so a lock file
    removed by :func:`_release` or :func:`_sweep` meanwhile is never trusted.
    """
    import fcntl

    for _ in range(8):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise OSError(errno.EAGAIN, f"{path} keeps being replaced")


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text(encoding="ascii").strip()
        if text.isdigit():
            return text
    return ""


def _release(inode: int) -> None:
    fd, path = _held.pop(inode)
    with contextlib.suppress(OSError):
        path.unlink()  # while still locked: see _try_lock
    with contextlib.suppress(OSError):
        os.close(fd)


def _sweep(directory: Path) -> None:
    """Remove lock files nobody holds (their process ended). Safe against a process
    locking one meanwhile: :func:`_try_lock` checks the path after locking."""
    import fcntl

    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            name = entry.name
            if not (name.startswith("socket-") and name.endswith(".lock")):
                continue
            number = name[7:-5]
            if not number.isdigit() or int(number) in _held:
                continue
            try:
                fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
            finally:
                os.close(fd)
            if removed >= _SWEEP_LIMIT:
                return


def _forked() -> None:
    """In a forked child: the parent's claims are the parent's, not ours."""
    global EPOCH
    EPOCH += 1
    for fd, _ in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)  # the parent's descriptor keeps its lock
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class ProcessGate:
    """The K9 check for one app, cached per process (a fork checks again).

    ``epoch == EPOCH`` means this process may serve: the hot path compares two
    integers. :meth:`check` does the work and caches a refusal too.
    """

    def __init__(self, store: StoreProbe) -> None:
        self._store = store
        self.epoch = -1
        self._refusal: tuple[int, str] | None = None
        self._logged = -1

    def check(self, *, fresh: bool = False) -> str | None:
        """None when this process may serve, else why not. ``fresh`` looks again
        (a server start-up: it may listen on new sockets)."""
        if not fresh:
            if self.epoch == EPOCH:
                return None
            if self._refusal is not None and self._refusal[0] == EPOCH:
                return self._refusal[1]
        refusal = None if self._store.shared else claim_listeners()
        if refusal is None:
            self.epoch, self._refusal = EPOCH, None
        else:
            self.epoch, self._refusal = -1, (EPOCH, refusal)
        return refusal

    def refuse_request(self) -> bool:
        """For a request: True (and the reason logged once per process) when refused."""
        refusal = self.check()
        if refusal is None:
            return False
        if self._logged != EPOCH:
            self._logged = EPOCH
            app_log.error("refusing requests: %s", refusal)
        return True
