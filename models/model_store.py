"""The model store: versioned ensemble checkpoints in a directory, and which one serves.

Layout under ``root``::

    versions/v0001/      weights.safetensors + meta.json (with the weights' sha256)
    versions/v0002/
    log.jsonl            one line per change: {"action": "promote"|"rollback"|"rotate", "version", "ts", ...}
    log-archive/         log-000001.jsonl.gz, ...: earlier lines of the log, moved there by ``rotate_log``

The log is the source of truth. Replaying it gives the serving stack: a
promotion pushes a version, a rollback pops the current one, so the version
that served before it serves again. A version directory is written under a
temporary name, synced to disk and renamed, so a reader never sees half a
checkpoint, and a log entry never names one a power loss could undo.
``prune`` deletes the versions that can no longer serve (rolled back, or
deeper in the stack than ``keep``); the log keeps every entry until
``rotate_log`` archives it and starts a new one from the versions kept.
Plain files, no Kafka: the trainer writes, workers and the CLI read, and the
model-updates topic only announces what the log already says.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError, verify_checkpoint
from models.ensemble import Ensemble

logger = logging.getLogger(__name__)
VERSION_RE = re.compile(r"^v(\d{4,})$")
LOG = "log.jsonl"
LOG_ARCHIVE = "log-archive"
ARCHIVE_RE = re.compile(r"^log-(\d{6,})\.jsonl\.gz$")


class StoreChanged(ValueError):
    """The store serves another version than the caller decided from (someone else promoted or rolled
    back meanwhile): nothing was written."""


class ModelStore:
    """Versioned checkpoints under ``root`` and the log of what serves."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self._read = _LogSoFar()  # the log's complete lines read so far: each read parses what was appended

    # ---- reading --------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """Every promotion and rollback, oldest first.

        A last line cut short (a writer that died mid-write, before it could
        announce anything) is left out with a warning; any other unreadable
        line is a ``CheckpointError``: the store cannot say what serves.
        Only what was appended since the last call is read and parsed (a
        store's log grows by a line per promotion, thousands a day).
        """
        return list(self._refresh()[0])

    def serving_stack(self) -> list[str]:
        """Versions in promotion order with rolled-back ones removed; the last one serves."""
        _, unfinished = self._refresh()
        return _apply(list(self._read.stack), unfinished)

    def _refresh(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Read what was appended since the last call: (every entry, the last one too if its line has no
        newline yet but parses; that last one alone, or nothing)."""
        path = self.root / LOG
        try:
            with open(path, "rb") as fh:
                inode = os.fstat(fh.fileno()).st_ino
                if inode != self._read.inode:  # first read, or the file was replaced
                    self._read = _LogSoFar(inode)
                fh.seek(self._read.offset - len(self._read.last))
                new = fh.read()
                if not new.startswith(self._read.last):
                    self._read = _LogSoFar(inode)  # rewritten, not appended to: read it all again
                    fh.seek(0)
                    new = fh.read()
                else:
                    new = new[len(self._read.last):]
        except FileNotFoundError:
            self._read = _LogSoFar()
            return [], []
        end = new.rfind(b"\n")
        if end >= 0:
            lines = new[:end].split(b"\n")
            self._read.extend(lines, path)
            self._read.offset += end + 1
            self._read.last = lines[-1] + b"\n"
        rest = new[end + 1:]
        if not rest.strip():
            return self._read.entries, []
        try:
            last = json.loads(rest)
        except json.JSONDecodeError:
            logger.warning("%s: its last line is cut short and left out (a write that did not finish): %r",
                           path, rest[:200])
            return self._read.entries, []
        _check_entry(last, f"{path} line {self._read.lines + 1}")
        return [*self._read.entries, last], [last]

    def current(self) -> str | None:
        """The serving version, or None for an empty store."""
        _, unfinished = self._refresh()
        stack = _apply(self._read.stack[-2:], unfinished)  # (at most one entry: a rollback pops one)
        return stack[-1] if stack else None

    def path(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise CheckpointError(f"not a version name: {version!r}")
        return self.versions_dir / version

    def load(self, version: str) -> tuple[Ensemble, dict[str, Any]]:
        """The ensemble of ``version``; ``CheckpointError`` when it is missing or corrupt."""
        path = self.path(version)
        if not path.is_dir():
            raise CheckpointError(f"no checkpoint for {version} in {self.versions_dir}")
        return Ensemble.load(path)

    # ---- writing --------------------------------------------------------------------

    def next_version(self) -> str:
        numbers = [int(m.group(1)) for p in self._version_dirs() if (m := VERSION_RE.match(p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def save(self, ensemble: Ensemble, extra: Mapping[str, Any] | None = None) -> str:
        """Write ``ensemble`` as the next version (not serving yet); returns its name.

        Its files and folder are synced to disk before the rename, and
        ``versions/`` after it, so a log entry naming the version (appended
        later, and synced) never outlives the version itself in a power loss.
        """
        if not self.versions_dir.is_dir():
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            _fsync(self.root)  # the new versions/ itself
        version = self.next_version()
        tmp = self.versions_dir / f".tmp-{version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        ensemble.save(tmp, extra={**dict(extra or {}), "model_version": version})
        for path in sorted(tmp.iterdir()):
            _fsync(path)
        _fsync(tmp)
        tmp.rename(self.path(version))
        _fsync(self.versions_dir)  # the rename
        return version

    def promote(self, version: str, *, expect_current: str | None = None, **info: Any) -> dict[str, Any]:
        """Make a saved ``version`` serve; returns the log entry (what gets announced).

        ``expect_current``: the version the caller's decision started from
        (the trainer's candidate learnt on from it); ``StoreChanged`` if
        another serves by the time the store's lock is held, e.g. after a
        ``reco rollback``, which a promotion would otherwise undo unseen.
        """
        with _locked(self.root):
            if not self.path(version).is_dir():
                raise CheckpointError(f"cannot promote {version}: not in the store")
            self._expect(expect_current)
            return self._append({"action": "promote", "version": version, **info})

    def rollback(self, *, expect_current: str | None = None, **info: Any) -> dict[str, Any]:
        """Serve the version that served before the current one; ``ValueError`` if there is none, or it
        was pruned, or its checkpoint is damaged (``CheckpointError``: workers could not load it).
        ``expect_current`` as for ``promote``. Decided and written under the store's lock, so a
        promotion, prune or other rollback cannot come in between."""
        with _locked(self.root):
            self._expect(expect_current)
            stack = self.serving_stack()
            if len(stack) < 2:
                raise ValueError(f"nothing to roll back to (serving: {stack or 'nothing'})")
            if not self.path(stack[-2]).is_dir():
                raise ValueError(f"{stack[-2]}, which served before {stack[-1]}, was pruned from the store")
            verify_checkpoint(self.path(stack[-2]))
            return self._append({"action": "rollback", "version": stack[-2], "from_version": stack[-1], **info})

    def discard(self, version: str) -> None:
        """Delete a saved version that was never promoted (a candidate the store refused)."""
        with _locked(self.root):
            if any(e.get("version") == version for e in self.log()):
                raise ValueError(f"{version} is in the store's log: prune it, do not discard it")
            path = self.path(version)
            doomed = path.rename(path.with_name(f".pruned-{version}-{os.getpid()}")) if path.is_dir() else None
        if doomed is not None:
            shutil.rmtree(doomed)

    def serving_entry(self) -> dict[str, Any] | None:
        """The log entry that made the current version serve (its promotion, or the rollback to it):
        what to announce again when an announcement may have been lost."""
        current = self.current()
        for entry in reversed(self.log()):
            if entry.get("action") in ("promote", "rollback") and entry.get("version") == current:
                return entry
        return None

    def _expect(self, version: str | None) -> None:
        if version is not None and (current := self.current()) != version:
            raise StoreChanged(f"the store serves {current}, not {version}: it changed meanwhile")

    def prune(self, keep: int) -> list[str]:
        """Delete every version outside the newest ``keep`` of the serving stack and older than the serving
        one (rolled back, or too deep for a rollback to reach); returns their names, oldest first.

        ``keep`` counts the serving version: 2 keeps one rollback. Each is
        renamed before it is deleted, so a reader finds a version whole or
        not at all (a worker then refuses it and serves on); what an earlier
        prune renamed but could not delete goes now. What to delete
        is decided, and renamed, under the store's lock: a rollback cannot
        make a doomed version serve in between.
        """
        if keep < 2:
            raise ValueError(f"keep at least 2 versions (the serving one and the one a rollback restores), not {keep}")
        with _locked(self.root):
            stack = self.serving_stack()
            if not stack:
                return []
            left = self._leftovers()
            kept, newest = set(stack[-keep:]), _number(stack[-1])
            doomed = sorted((p for p in self._version_dirs() if VERSION_RE.match(p.name)
                             and p.name not in kept and _number(p.name) < newest), key=lambda p: _number(p.name))
            gone = [path.rename(path.with_name(f".pruned-{path.name}-{os.getpid()}")) for path in doomed]
        for path in gone + left:
            shutil.rmtree(path)
        return [p.name for p in doomed]

    def _leftovers(self) -> list[Path]:
        """Folders an earlier prune renamed but failed to delete, and half-saved versions of other
        processes (a trainer that died while saving): no reader looks at either."""
        mine = f"-{os.getpid()}"
        return [p for p in self._version_dirs()
                if p.name.startswith(".pruned-") or (p.name.startswith(".tmp-") and not p.name.endswith(mine))]

    def rotate_log(self, max_lines: int, keep: int = 0) -> Path | None:
        """Once the log holds more than ``max_lines`` lines, move it to ``log-archive/`` (gzip) and start a new
        one; returns the archive's path, or None when the log is short enough.

        The new log is a ``rotate`` entry naming the archive, then the
        promotion entries of the newest ``keep`` versions of the serving stack
        (all of it for 0) and, when the serving version serves by a rollback,
        the promotion it undid and that rollback, copied unchanged: it serves,
        rolls back, resumes (``sample_offsets``) and says how the serving
        version came to serve (``serving_entry``) as the old one did. When
        those would not fit in ``max_lines`` either, nothing is archived.
        Without it the log grows by a line per promotion for good, and every
        reader holds all of it in memory. The new log replaces the old one by a rename; appends wait
        for it (a lock file), and readers see a new file and read it whole.
        """
        if max_lines < 1 or keep < 0:
            raise ValueError(f"max_lines must be at least 1 and keep at least 0, not {max_lines} and {keep}")
        self._refresh()
        if self._read.lines <= max_lines:
            return None
        path = self.root / LOG
        with _locked(self.root):
            old = path.read_bytes()  # under the lock: every append so far is in it, none comes in between
            read = _read_whole(old, path)  # a last line cut short is left out here, kept in the archive
            stack = read.stack[-keep:] if keep else read.stack
            promotions, rolled_back = _how_it_serves(read.entries)
            copies = [*(promotions[v] for v in stack), *rolled_back]
            if len(copies) + 1 > max_lines:  # (keep 0, a long stack) the new log would be due again at once
                logger.warning("store log not archived: the %d entries it keeps would not fit in %d lines",
                               len(copies), max_lines)
                return None
            archive = self._archive(_archives_named(read.entries) + 1)
            _write_atomically(archive, gzip.compress(old))
            rotate = {"action": "rotate", "archive": f"{LOG_ARCHIVE}/{archive.name}", "archived_lines": read.lines,
                      "kept": stack, "copied": len(copies), "ts": time.time()}
            fresh = [rotate, *copies]
            _write_atomically(path, b"".join(json.dumps(e, allow_nan=False).encode() + b"\n" for e in fresh))
        self._read = _LogSoFar()
        logger.info("store log: %d lines archived to %s; the new log keeps %s", read.lines, archive, stack)
        return archive

    def history(self) -> list[dict[str, Any]]:
        """Every entry the store's log ever held, oldest first: the archived logs' (``rotate_log``), then the
        current log's, without the promotions each rotation copied into the new log.

        The log is read first, and only the archives it follows from are read
        (1 to the one its ``rotate`` entry names): a rotation meanwhile, or an
        archive left by one that failed before it replaced the log, changes
        nothing. An archive someone removed is skipped.
        """
        current = self.log()
        out: list[dict[str, Any]] = []
        for number in range(1, _archives_named(current) + 1):
            if (path := self._archive(number)).is_file():
                out += _without_copies(_read_whole(gzip.decompress(path.read_bytes()), path).entries)
        return out + _without_copies(current)

    def _archive(self, number: int) -> Path:
        return self.root / LOG_ARCHIVE / f"log-{number:06d}.jsonl.gz"  # what ``ARCHIVE_RE`` matches

    def archives(self) -> list[Path]:
        """The archived logs, oldest first."""
        folder = self.root / LOG_ARCHIVE
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := ARCHIVE_RE.match(p.name))] \
            if folder.is_dir() else []
        return [p for _, p in sorted(found)]

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` (with its time) to the log; the caller holds the store's lock."""
        entry = {**entry, "ts": time.time()}
        created = not (self.root / LOG).exists()
        with open(self.root / LOG, "a+b") as fh:
            _drop_cut_line(fh)
            fh.write(json.dumps(entry, allow_nan=False).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        if created:  # the log's name too: lost, the store would serve nothing after a power loss
            _fsync(self.root)
        return entry

    def _version_dirs(self) -> list[Path]:
        return [p for p in self.versions_dir.iterdir() if p.is_dir()] if self.versions_dir.is_dir() else []


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the store's lock file: one writer of the log at a time (the trainer, ``reco rollback``)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "log.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, synced, renamed over it, and the folder synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: leave no half-written file behind
        raise
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Sync a file's data, or a folder's entries (what was created or renamed in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _number(version: str) -> int:
    match = VERSION_RE.match(version)
    if match is None:
        raise CheckpointError(f"not a version name: {version!r}")
    return int(match.group(1))


def _check_entry(entry: Any, where: str) -> None:
    """``CheckpointError`` unless ``entry`` is a log entry ``_apply`` can read: JSON that parses but is not
    one (``null``, an entry without its action or version) would otherwise stop every reader of the log."""
    if not isinstance(entry, dict) or not isinstance(entry.get("action"), str):
        raise CheckpointError(f"{where} is not a log entry (no action): {str(entry)[:200]!r}")
    needs = {"promote": "version", "rollback": "version", "rotate": "archive"}.get(entry["action"])
    if needs is not None and not isinstance(entry.get(needs), str):
        raise CheckpointError(f"{where}: a {entry['action']} entry without its {needs}: {str(entry)[:200]!r}")


def _apply(stack: list[str], entries: list[dict[str, Any]]) -> list[str]:
    """``stack`` after ``entries``: a promotion pushes its version, a rollback pops the current one, a
    rotation starts afresh (the copied promotions after it rebuild the stack)."""
    for entry in entries:
        if entry["action"] == "promote":
            stack.append(entry["version"])
        elif entry["action"] == "rollback" and stack:
            stack.pop()
        elif entry["action"] == "rotate":
            stack.clear()
    return stack


class _LogSoFar:
    """The complete lines of a store's log read so far: their entries, the serving stack after them, and
    where the next read starts."""

    def __init__(self, inode: int | None = None) -> None:
        self.inode, self.offset = inode, 0
        self.last = b""  # the last complete line read, with its newline: a rewritten log no longer has it there
        self.entries: list[dict[str, Any]] = []
        self.stack: list[str] = []
        self.lines = 0

    def extend(self, lines: list[bytes], path: Path) -> None:
        """Take complete lines, all or none: ``CheckpointError`` names the first unreadable one."""
        entries = []
        for n, line in enumerate(lines, self.lines + 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"{path} line {n} is unreadable ({exc}): the store's log is damaged") from exc
                _check_entry(entries[-1], f"{path} line {n}")
        self.lines += len(lines)
        self.entries += entries
        _apply(self.stack, entries)


def _read_whole(data: bytes, path: Path) -> _LogSoFar:
    """A whole log's entries and serving stack; a last line that does not parse (cut short) is left out."""
    lines = data.split(b"\n")
    read = _LogSoFar()
    read.extend(lines if _parses(lines[-1]) else lines[:-1], path)
    return read


def _archives_named(entries: list[dict[str, Any]]) -> int:
    """The number of the archive a log's first entry names (its ``rotate`` entry), 0 for a log never
    rotated: archives 1 to that one hold what came before it. The next rotation writes the one after,
    so an archive a failed rotation left behind is written over, not added to."""
    if not entries or entries[0]["action"] != "rotate":
        return 0
    match = ARCHIVE_RE.match(Path(entries[0]["archive"]).name)
    if match is None:
        raise CheckpointError(f"a rotate entry names no archive: {entries[0]!r}")
    return int(match.group(1))


def _how_it_serves(entries: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each version's promotion entry and, when the serving version serves by a rollback (the latest entry
    that changed the stack), the promotion that rollback undid and the rollback (else nothing): what a new
    log copies after the kept promotions so it still serves by that rollback."""
    promotions = {e["version"]: e for e in entries if e["action"] == "promote"}
    last = next((e for e in reversed(entries) if e["action"] in ("promote", "rollback")), None)
    if last is None or last["action"] != "rollback":
        return promotions, []
    return promotions, [promotions[last["from_version"]], last]


def _without_copies(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` less the entries copied after each ``rotate`` entry (``copied`` of them; its ``kept``
    versions' promotions in a log rotated before 2026-12-07)."""
    out, skip = [], 0
    for entry in entries:
        if skip:
            skip -= 1
            continue
        out.append(entry)
        if entry["action"] == "rotate":
            skip = entry.get("copied", len(entry.get("kept", [])))
    return out


def _drop_cut_line(fh: Any) -> None:
    """Before an append: end a last line without its newline, so the new line does not run into it. One
    that parses (readers count it) gets its newline; one cut short (a write that did not finish, which
    readers leave out) is cut off."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return
    start = max(0, size - 65_536)  # an entry is a few hundred bytes
    fh.seek(start)
    tail = fh.read()
    if tail.endswith(b"\n"):
        return
    if b"\n" not in tail and start > 0:
        raise CheckpointError(f"{fh.name}: its last 64 KB hold no line end: the store's log is damaged")
    keep = start + tail.rfind(b"\n") + 1
    if _parses(tail[keep - start:]):
        fh.write(b"\n")  # a whole entry, only its newline missing
        return
    logger.warning("store log: a last line cut short (%d bytes) is removed before appending", size - keep)
    fh.truncate(keep)
    fh.seek(0, os.SEEK_END)


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True
