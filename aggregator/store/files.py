"""Article files on disk: atomic writes, concurrent writers, adoption by entry_id.

Every file is written to a hidden temp file in its folder and renamed into place, so a
crash never leaves half a file; Hexo, Hugo and Jekyll skip the hidden temp files.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from aggregator.errors import LocalFaultError, StoreError
from aggregator.store.faults import POSTS, Faults, is_local_os_fault

_ENTRY_ID = re.compile(r"^entry_id: ([0-9a-f]+)$")
FRONT_MATTER_LINES = 10_000  # a bound, not a limit any real front matter reaches
FRONT_MATTER_LINE_CHARS = 1_000_000
WRITER_THREADS = 4  # file creation is kernel time; threads overlap it with the poll's work
# Fewer files than this are written on the caller's thread: handing a small feed's few
# files to the writers and waiting for them cost twice as long as writing them
# (bench/smallfeeds: ~140 µs a file against ~60).
CONCURRENT_FROM = 16


class ArticleFiles:
    """The posts folder.

    Args:
        posts_dir: the folder article files are written under.
        fsync: also flush each file to the device before renaming it (slower, survives
            power loss, not just a crashed process).
        faults: where a fault of the folder itself (full, read-only) is recorded, and
            cleared by the next write that succeeds.
    """

    def __init__(
        self, posts_dir: str, *, fsync: bool = False, faults: Faults | None = None
    ) -> None:
        self.posts_dir = Path(posts_dir)
        self._root = str(self.posts_dir)  # joined as a string by the writes (no Path per file)
        self.fsync = fsync
        self.faults = faults or Faults()
        self._probe_bytes = 0  # the size of the largest file a fault of the folder failed
        self._writers: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the writer threads."""
        if self._writers is not None:
            self._writers.shutdown()
            self._writers = None

    def file_path(self, relative: str) -> Path:
        """The absolute path of an article file."""
        return self.posts_dir / relative

    def file_exists(self, relative: str) -> bool:
        """True when the article file is on disk."""
        return os.path.isfile(f"{self._root}/{relative}")  # noqa: PTH113 (no Path per file)

    def read_file(self, relative: str) -> bytes | None:
        """An article file's bytes (None: not there, or unreadable)."""
        try:
            return self.file_path(relative).read_bytes()
        except OSError:
            return None

    def entry_id_of(self, relative: str) -> str | None:
        """The ``entry_id`` in a file's front matter (None: not one of our articles).

        The front matter is read up to its closing line, however long its values are.
        """
        try:
            with self.file_path(relative).open("r", encoding="utf-8", errors="replace") as f:
                if f.readline() != "---\n":
                    return None
                for _ in range(FRONT_MATTER_LINES):
                    line = f.readline(FRONT_MATTER_LINE_CHARS)
                    if not line or line == "---\n":
                        return None
                    match = _ENTRY_ID.match(line)
                    if match:
                        return match.group(1)
        except OSError:
            return None
        return None

    def write_file(self, relative: str, text: str) -> None:
        """Write an article file atomically: a temp file in the same folder, then rename.

        Raises:
            LocalFaultError: the folder itself is failing (full disk, read-only, over
                quota, I/O error); nothing is left half-written.
            StoreError: the folder cannot be created or the file cannot be written for
                another reason (e.g. a name the file system refuses).
        """
        write_atomic(f"{self._root}/{relative}", text.encode("utf-8"), fsync=self.fsync)

    def write_files(self, files: Mapping[str, str]) -> dict[str, StoreError]:
        """Write several article files atomically, concurrently; returns the failures.

        A batch that met a fault of the folder itself records it in ``faults``; a batch
        written whole clears it (judged per batch: the writers run concurrently, so one
        file that still fitted must not clear a fault its neighbours met).
        """
        failures = self._write_all(files)
        local = [e for e in failures.values() if isinstance(e, LocalFaultError)]
        if local:
            self.faults.record(POSTS, str(local[0]))
            # The fault is over when a file as large as those that failed fits again.
            self._probe_bytes = max(len(files[r].encode()) for r in failures)
        elif files and not failures:
            self.faults.clear(POSTS)
        return failures

    def _write_all(self, files: Mapping[str, str]) -> dict[str, StoreError]:
        if len(files) < CONCURRENT_FROM:
            failures: dict[str, StoreError] = {}
            for relative, text in files.items():
                try:
                    self.write_file(relative, text)
                except StoreError as exc:
                    failures[relative] = exc
            return failures
        if self._writers is None:
            self._writers = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="write")
        futures = {r: self._writers.submit(self.write_file, r, t) for r, t in files.items()}
        failures = {}
        for relative, future in futures.items():
            error = future.exception()
            if isinstance(error, StoreError):
                failures[relative] = error
            elif error is not None:
                raise error
        return failures

    def recheck_fault(self) -> None:
        """While a fault of the folder is in force, write a file as large as the largest
        that failed, and clear the fault if it works: the folder is healthy again once
        space returns even when no source has anything to write (every feed answering
        304 for hours)."""
        if not self.faults.in_force(POSTS):
            return
        try:
            with tempfile.NamedTemporaryFile(
                prefix=".probe.", suffix=".tmp", dir=self.posts_dir
            ) as probe:
                probe.write(b"\0" * self._probe_bytes)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError:
            return
        self.faults.clear(POSTS)

    def sweep_temp_files(self, min_age: float = 300.0) -> int:
        """Remove temp files a killed writer left behind (older than ``min_age`` seconds).

        They are never article files (hidden, ``.tmp``) and Hexo/Hugo/Jekyll skip them;
        this only keeps the folder tidy. Returns how many were removed.
        """
        if not self.posts_dir.is_dir():
            return 0
        cutoff = time.time() - min_age
        removed = 0
        for path in self.posts_dir.rglob(".*.tmp"):
            with suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def delete_file(self, relative: str) -> None:
        """Remove an article file, if it is there."""
        with suppress(OSError):
            self.file_path(relative).unlink()


def write_atomic(target: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Write a file atomically: a hidden temp file in the same folder, then rename.

    Readers (a site generator, a web server) see the old file or the new one, never
    half of one. The folders are made as needed (looked at only when the temp file cannot
    be created: a cold pass writes thousands of files into a few folders).

    Plain ``os`` calls on one string, not ``Path`` and ``tempfile``: a cold pass of many
    small feeds writes a few files per source on the thread that stores them all, and
    ``mkdir``, ``mkstemp``'s random names, ``fdopen`` and ``chmod`` by path cost more
    than the write (bench/smallfeeds).

    Raises:
        LocalFaultError: the folder itself is failing (full disk, read-only, over
            quota, I/O error); nothing is left half-written.
        StoreError: the folder cannot be created or the file cannot be written for
            another reason (e.g. a name the file system refuses).
    """
    path = os.fspath(target)
    tmp: str | None = None
    try:
        try:
            fd, tmp = _create_temp(path)
        except FileNotFoundError:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_temp(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # As readable as any other file, whatever the umask (as before: mkstemp's 0600
            # was widened by a chmod).
            os.fchmod(fd, 0o644)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # noqa: PTH105 (strings: no Path per file)
        tmp = None
    except OSError as exc:
        message = f"cannot write {path}: {exc.strerror or exc}"
        if is_local_os_fault(exc):
            raise LocalFaultError(message) from exc
        raise StoreError(message) from exc
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)  # noqa: PTH108


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_temp_numbers = itertools.count()  # unique in this process (``next`` is atomic)
TEMP_ATTEMPTS = 100


def _create_temp(path: str) -> tuple[int, str]:
    """Create a new hidden temp file beside ``path`` (a leading dot: Hexo, Hugo and
    Jekyll all skip hidden files): its descriptor and name.

    Named by process id and a counter, not at random: unique among this process's
    writers, and a name a killed process left behind is simply passed over.
    """
    folder, sep, name = path.rpartition(os.sep)
    prefix = f"{folder}{sep}.{name[:40]}.{os.getpid()}-"
    for _ in range(TEMP_ATTEMPTS):
        tmp = f"{prefix}{next(_temp_numbers)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", path)
