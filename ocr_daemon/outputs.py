"""Where outcomes go: the sidecar in the outbox, the input moved to processed/ or failed/, and the
``NAME.error.json`` record beside a failed input.

Naming rule: ``inbox/a/b/scan.png`` → ``outbox/a/b/scan.txt``. A name already on disk, or reserved
by another outcome in progress, is never reused: the next free of ``scan (2).txt``, ``scan (3).txt``
... is taken, and likewise in processed/ and failed/. With several `outputs` the input's outputs are
a *set* named once: ``scan.txt``, ``scan.pdf``, ``scan.json``, ``scan.hocr``, ``scan.alto.xml``, or
all ``scan (2).*`` when any one of them is taken. A set is published in two steps: every member is
written to a durable temp file, the journal marks the set staged, then each is linked into place; a
crash before the mark undoes the set, after it finishes it. Every outcome is reserved in the journal
before anything is written and is finished by `finish` — also after a crash, from the journal alone
— so each input ends with exactly one sidecar or one failure record.

The settings that apply to an input (``on_success``, ``output_mode``) are those of its effective
config, which the dispatcher's job carries with the outcome; only an outcome finished from the
journal alone (after a crash) works it out here.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath

import structlog

from ocr_daemon import safefs
from ocr_daemon.config import Config
from ocr_daemon.engines.base import OcrResult
from ocr_daemon.errors import OcrDaemonError, OutputError
from ocr_daemon.formats import SUFFIX, TXT_ONLY, Rendering
from ocr_daemon.journal import JobRecord, Journal, Outcome

log = structlog.get_logger()
ERROR_SUFFIX = ".error.json"
NAME_TRIES = 10  # free names taken by someone else between choosing and publishing


class InputChanged(Exception):
    """The input is gone, or is no longer the file that was recognised."""

    def __init__(self, rel: PurePosixPath, vanished: bool) -> None:
        super().__init__(rel, vanished)
        self.rel = rel
        self.vanished = vanished


class AlreadyFinished(Exception):
    """The job's outcome is already committed (or being committed): this result is a duplicate."""

    def __init__(self, rel: PurePosixPath) -> None:
        super().__init__(rel)
        self.rel = rel


@dataclass(frozen=True)
class Failure:
    """Everything a failure record says about a failed input."""

    error: OcrDaemonError
    attempts: int
    first_seen: float
    engine: str


class Outputs:
    """Commits outcomes; `commit_success` and `commit_failure` run in threads, concurrently."""

    def __init__(self, config: Config, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self._naming = threading.Lock()  # choosing a free name and reserving it are one step

    def commit_success(
        self,
        job: JobRecord,
        result: OcrResult,
        rendering: Rendering = TXT_ONLY,
        renders: dict[str, bytes] | None = None,
        *,
        effective: Config | None = None,
    ) -> PurePosixPath:
        """Write the sidecar (or the set of outputs `rendering` names, `renders` holding the
        bytes of all but the txt), dispose of the input; returns the path under the outbox of
        the sidecar (of the set's first member). `effective` is the config for this input (the
        dispatcher's job carries it), worked out here when not given."""
        effective = self._config_for(job, effective)
        resumed = self._resume(job, effective)
        if resumed is not None:
            return resumed
        self._check_unchanged(job)
        # An engine (a plug-in, or one echoing a non-UTF-8 file name) may hand back lone
        # surrogates: escape them, so one odd text fails nothing and the sidecar stays UTF-8.
        data = result.text.encode("utf-8", "backslashreplace")
        if rendering.formats != ("txt",):
            contents = {"txt": data, **(renders or {})}
            chosen = {name: contents[name] for name in rendering.formats}
            return self._commit_set(job, chosen, effective)
        for _ in range(NAME_TRIES):
            with self._naming:
                sidecar = self._free_name(self.config.outbox, job.rel.with_suffix(".txt"))
                moved = self._free_processed_name(job.rel, effective)
                self._reserve(job, "done", sidecar, moved)
            if self._write(job, self.config.outbox, sidecar, data, mode=effective.output_mode):
                self._dispose(job, "done", (sidecar,), moved, effective)
                return sidecar
        raise self._names_keep_vanishing(job, self.config.outbox)

    def _commit_set(
        self, job: JobRecord, contents: dict[str, bytes], effective: Config
    ) -> PurePosixPath:
        for _ in range(NAME_TRIES):
            with self._naming:
                names = self._free_set(job.rel, tuple(contents))
                moved = self._free_processed_name(job.rel, effective)
                members = tuple(names.values())
                self._reserve(job, "done", members[0], moved, members=members)
            if self._publish_set(job, names, contents, effective.output_mode):
                self._dispose(job, "done", members, moved, effective)
                return members[0]
        raise self._names_keep_vanishing(job, self.config.outbox)

    def _free_set(self, rel: PurePosixPath, formats: tuple[str, ...]) -> dict[str, PurePosixPath]:
        """One naming decision for the whole set: the first numbered base name free for every
        member (on disk and in the journal), the stem shortened for the longest suffix."""
        stem = rel.with_suffix(".txt").name.removesuffix(".txt")  # exactly as the sidecar's
        longest = max((SUFFIX[name] for name in formats), key=len)
        for n in range(1, 100_000):
            number = "" if n == 1 else f" ({n})"
            base = safefs.fit_name(stem, number + longest).removesuffix(longest)
            names = {name: rel.with_name(base + SUFFIX[name]) for name in formats}
            if not any(self._taken(self.config.outbox, member) for member in names.values()):
                return names
        raise OSError(f"no free name for {rel} under {self.config.outbox}")

    def _publish_set(
        self,
        job: JobRecord,
        names: dict[str, PurePosixPath],
        contents: dict[str, bytes],
        mode: int,
    ) -> bool:
        """Stage every member, mark the set staged, link each; False (set undone, job active
        again) when someone else created one of the names since they were chosen."""
        root, folder = self.config.outbox, next(iter(names.values())).parent
        try:
            for name, data in contents.items():
                safefs.stage_new(root, folder, _member_tag(job.id, name), data, mode)
            safefs.sync_dir(root, folder)
            self.journal.stage(job.id)
            self._link_set(job.id, names)
        except FileExistsError as exc:
            self._undo_set(job.id, names)
            log.warning("output.name_taken", path=str(job.rel), output=str(exc.filename))
            return False
        except OSError as exc:
            self._undo_set(job.id, names)
            raise safefs.as_output_error(exc, root) from exc
        return True

    def _link_set(
        self, job_id: int, names: dict[str, PurePosixPath], *, resuming: bool = False
    ) -> None:
        """Link every staged member into place, then drop the temps (not before: until all are
        linked, a temp is how an undo knows a name is ours)."""
        root = self.config.outbox
        for name, rel in names.items():
            tag = _member_tag(job_id, name)
            try:
                safefs.publish_staged(root, rel, tag, resuming=resuming)
            except FileExistsError as exc:
                exc.filename = str(rel)
                raise
        for name, rel in names.items():
            safefs.remove_temp(root, rel.parent, _member_tag(job_id, name))
        safefs.sync_dir(root, next(iter(names.values())).parent)

    def _undo_set(self, job_id: int, names: dict[str, PurePosixPath]) -> None:
        """Unpublish what this set linked, drop its temps, make the job active again."""
        root = self.config.outbox
        for name, rel in names.items():
            safefs.unpublish_staged(root, rel, _member_tag(job_id, name))
        for name, rel in names.items():
            safefs.remove_temp(root, rel.parent, _member_tag(job_id, name))
        self.journal.reopen(job_id)

    def _finish_set(self, job: JobRecord) -> bool:
        """After a crash: a staged set whose every member is still linked or linkable is
        finished; anything else (not staged; a member lost or taken by another file) undone."""
        root = self.config.outbox
        names = {_format_of(rel): rel for rel in job.members}
        if job.staged and all(
            safefs.staged_exists(root, rel.parent, _member_tag(job.id, name))
            or safefs.lstat_in(root, rel) is not None
            for name, rel in names.items()
        ):
            try:
                self._link_set(job.id, names, resuming=True)
            except FileExistsError:
                pass
            else:
                return True
        self._undo_set(job.id, names)
        return False

    def commit_failure(
        self, job: JobRecord, failure: Failure, *, effective: Config | None = None
    ) -> PurePosixPath:
        """Move the input to failed/ with its error record; returns the record's path."""
        effective = self._config_for(job, effective)
        resumed = self._resume(job, effective)
        if resumed is not None:
            return resumed
        self._check_unchanged(job)
        for _ in range(NAME_TRIES):
            with self._naming:
                moved = self._free_failed_name(job.rel)
                record = moved.with_name(safefs.fit_name(moved.name, ERROR_SUFFIX))
                self._reserve(job, "failed", record, moved, failure.error.reason)
            data = _error_record(job, failure, moved)
            if self._write(job, self.config.failed, record, data, mode=effective.output_mode):
                self._dispose(job, "failed", (record,), moved, effective)
                return record
        raise self._names_keep_vanishing(job, self.config.failed)

    def finish(self, job: JobRecord, effective: Config | None = None) -> bool:
        """Complete an outcome interrupted by a crash or by a failed disposal. False when nothing
        was written yet (the job is active again and will be recognised anew), or when the input
        changed since: its output is then withdrawn and the file is recognised as it is now.
        After a crash there is only the journal's record: its config is worked out here."""
        assert job.output is not None
        effective = self._config_for(job, effective)
        if job.members:
            if not self._finish_set(job):
                return False
            try:
                self._dispose(job, "done", job.members, job.moved_to, effective)
            except InputChanged:
                return False
            return True
        root = self.config.outbox if job.outcome == "done" else self.config.failed
        safefs.remove_temp(root, job.output.parent, str(job.id))
        if safefs.lstat_in(root, job.output) is None:
            self.journal.reopen(job.id)
            return False
        try:
            self._dispose(job, job.outcome or "done", (job.output,), job.moved_to, effective)
        except InputChanged:
            return False
        return True

    def _resume(self, job: JobRecord, effective: Config) -> PurePosixPath | None:
        """A commit tried again after its output was published but the input could not be moved:
        finish that outcome under its reserved names, never a second output under new ones.
        None: the job is active, commit it; a job already finished raises `AlreadyFinished`."""
        now = self.journal.record(job.id)
        if now is not None and now.state == "committing":
            return now.output if self.finish(now, effective) else None
        if now is None or now.state != "active":
            raise AlreadyFinished(job.rel)
        return None

    def _reserve(
        self,
        job: JobRecord,
        outcome: Outcome,
        output: PurePosixPath,
        moved: PurePosixPath | None,
        reason: str | None = None,
        *,
        members: tuple[PurePosixPath, ...] = (),
    ) -> None:
        if not self.journal.reserve(job.id, outcome, output, moved, reason, members=members):
            raise AlreadyFinished(job.rel)

    def _config_for(self, job: JobRecord, given: Config | None) -> Config:
        """The config for this input as its caller carries it (the dispatcher's job), else the
        config with the first per-folder rule matching it merged in (recovery from the journal
        alone)."""
        return given if given is not None else self.config.for_path(job.rel)[0]

    def _check_unchanged(self, job: JobRecord) -> None:
        st = safefs.lstat_in(self.config.inbox, job.rel)
        if st is None or safefs.Identity.of(st) != job.identity:
            raise InputChanged(job.rel, vanished=st is None)

    def _free_name(self, root: Path, rel: PurePosixPath) -> PurePosixPath:
        for n in range(1, 100_000):
            candidate = safefs.numbered(rel, n)
            if not self._taken(root, candidate):
                return candidate
        raise OSError(f"no free name for {rel} under {root}")

    def _free_processed_name(self, rel: PurePosixPath, effective: Config) -> PurePosixPath | None:
        """Where the input goes in processed/, when it is moved there."""
        return (
            self._free_name(self.config.processed, rel) if effective.on_success == "move" else None
        )

    def _free_failed_name(self, rel: PurePosixPath) -> PurePosixPath:
        for n in range(1, 100_000):
            moved = safefs.numbered(rel, n)
            record = moved.with_name(safefs.fit_name(moved.name, ERROR_SUFFIX))
            if not (
                self._taken(self.config.failed, moved) or self._taken(self.config.failed, record)
            ):
                return moved
        raise OSError(f"no free name for {rel} under {self.config.failed}")

    def _taken(self, root: Path, rel: PurePosixPath) -> bool:
        return safefs.lstat_in(root, rel) is not None or self.journal.is_reserved(rel)

    def _write(
        self, job: JobRecord, root: Path, rel: PurePosixPath, data: bytes, *, mode: int
    ) -> bool:
        """Publish the output; False when someone else created that name since it was chosen."""
        try:
            safefs.write_new(root, rel, data, mode, tag=str(job.id))
        except FileExistsError:
            self.journal.reopen(job.id)
            log.warning("output.name_taken", path=str(job.rel), output=str(rel))
            return False
        except OSError as exc:
            self.journal.reopen(job.id)
            raise safefs.as_output_error(exc, root) from exc
        return True

    def _names_keep_vanishing(self, job: JobRecord, root: Path) -> OutputError:
        message = f"{NAME_TRIES} free names for {job.rel} were taken by others before use"
        return OutputError(message, str(root))

    def _dispose(
        self,
        job: JobRecord,
        outcome: Outcome,
        outputs: tuple[PurePosixPath, ...],
        moved: PurePosixPath | None,
        effective: Config,
    ) -> None:
        """Move (or delete, or keep) the input, then mark the outcome finished. An input that
        changed since it was recognised withdraws `outputs` (`InputChanged`): never an outcome
        for bytes the file no longer holds, and never a second one for the new bytes."""
        root = self.config.processed if outcome == "done" else self.config.failed
        try:
            if moved is not None:
                safefs.remove_temp(root, moved.parent, safefs.move_temp_tag(str(job.id)))
                safefs.move_new(
                    self.config.inbox, job.rel, root, moved, job.identity, tag=str(job.id)
                )
            elif effective.on_success == "delete":
                safefs.unlink_in(self.config.inbox, job.rel, job.identity)
        except safefs.SourceChanged:
            self._withdraw(job, outcome, outputs)
            raise InputChanged(job.rel, vanished=False) from None
        except FileNotFoundError:
            log.warning("file.vanished_at_disposal", path=str(job.rel))
        except OSError as exc:
            raise safefs.as_output_error(exc, root) from exc
        self.journal.finish(job.id, outcome)

    def _withdraw(
        self, job: JobRecord, outcome: Outcome, outputs: tuple[PurePosixPath, ...]
    ) -> None:
        """Remove the output just published for an input that has changed since (its name was
        reserved for it: no one else's file), then let the job go: the file as it is now is a
        new job. A crash between the two finds the output gone and reopens the job."""
        root = self.config.outbox if outcome == "done" else self.config.failed
        for output in outputs:
            with contextlib.suppress(FileNotFoundError):
                safefs.unlink_in(root, output, None)
        self.journal.finish(job.id, "gone")
        log.warning(
            "output.withdrawn", path=str(job.rel), outputs=[str(o) for o in outputs],
            reason="the input changed after its output was written; it is read again once it "
            "settles",
        )  # fmt: skip


def _member_tag(job_id: int, name: str) -> str:
    """The temp-file tag of one member of a job's set."""
    return f"{job_id}-{name}"


def _format_of(rel: PurePosixPath) -> str:
    """Which format a set member is, from its suffix (".alto.xml" before ".xml")."""
    return next(name for name, suffix in SUFFIX.items() if rel.name.endswith(suffix))


def _error_record(job: JobRecord, failure: Failure, moved: PurePosixPath) -> bytes:
    now = time.time()
    record = {
        "file": str(job.rel),
        "moved_to": str(moved),
        "reason": failure.error.reason,
        "message": failure.error.message,
        "attempts": failure.attempts,
        "first_seen": _iso(failure.first_seen),
        "failed_at": _iso(now),
        "engine": failure.engine,
        "daemon_version": metadata.version("ocr-daemon"),
    }
    shown = {k: safefs.shown(v) if isinstance(v, str) else v for k, v in record.items()}
    # a non-UTF-8 name written escaped (caf\\xe9.png): lone surrogates are not valid UTF-8
    return (json.dumps(shown, indent=2, ensure_ascii=False, default=str) + "\n").encode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
