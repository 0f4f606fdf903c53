"""One exception family for the whole platform.

Every error a user can meet derives from :class:`AimsError`, carries the fields that locate the
problem (table, file, column, key) and says what to do, so that notebooks, the CLI and run logs can
show a sentence instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AimsError(Exception):
    """Root of every error raised on purpose by aims_nb_utils."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} -> {self.hint}" if self.hint else self.message


class SettingsError(AimsError):
    """A configuration value is unknown, of the wrong type or out of range."""

    def __init__(self, key: str, value: object, source: str, problem: str, hint: str | None = None):
        self.key = key
        self.value = value
        self.source = source
        super().__init__(f"setting {key!r} = {value!r} from {source}: {problem}", hint=hint)


class EnvironmentDetectionError(AimsError):
    """The runtime (Fabric or local) cannot be resolved as asked."""


class TableNameError(AimsError):
    """A table name would escape the lake or is not a plain identifier."""

    def __init__(self, name: str, origin: str = "table name") -> None:
        self.table = name
        super().__init__(
            f"{origin} {name!r} is not a valid table name",
            hint="use letters, digits and underscores only (e.g. aims_assets)",
        )


class BronzeReadError(AimsError):
    """A Bronze file is missing or cannot be read."""

    def __init__(self, table: str, path: Path | str, reason: str, hint: str | None = None) -> None:
        self.table = table
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"table {table}: cannot read {path}: {reason}",
            hint=hint or "run `python -m aims_nb_utils repair` or re-export the file",
        )


class RuleFileError(AimsError):
    """A rule file is missing, malformed or names something that does not exist."""

    def __init__(self, path: Path | str, problem: str, hint: str | None = None) -> None:
        self.path = str(path)
        super().__init__(f"rule file {path}: {problem}", hint=hint)


class OptionalDependencyError(AimsError):
    """A feature needs a package that is not installed."""

    def __init__(self, package: str, feature: str) -> None:
        self.package = package
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed",
            hint=f"pip install {package}",
        )


def os_error_message(exc: OSError) -> str:
    """An OSError as words: its description and the file, without the class name or errno."""
    text = exc.strerror or str(exc)
    where = exc.filename
    return f"{text} ({where})" if where else text


def free_bytes(path: Path | str) -> int | None:
    """Free space of the filesystem holding ``path`` (its nearest existing folder), or None."""
    import shutil

    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


class DiskFullError(AimsError):
    """The filesystem a write goes to is full: nothing of that write was published."""

    def __init__(self, path: Path | str, doing: str) -> None:
        self.path = str(path)
        free = free_bytes(path)
        room = "" if free is None else f" ({free / 2**20:,.1f} MiB free)"
        super().__init__(
            f"no space left on the disk holding {path}{room} while trying to {doing}; the "
            "previous version was kept",
            hint="free some space (or point the lake at a bigger disk) and run the command again",
        )


class ReadOnlyError(AimsError):
    """A folder the command must write to is read-only or not writable by this user."""

    def __init__(self, path: Path | str, doing: str, hint: str | None = None) -> None:
        self.path = str(path)
        super().__init__(
            f"cannot {doing}: {path} is read-only or not writable by this user",
            hint=hint or "give this user write access to that folder, or use a writable copy",
        )


class RunAbandonedError(AimsError):
    """A worker's run is gone (killed) or lost the lake lock: the worker publishes nothing."""

    def __init__(self, table: str, parent_pid: int) -> None:
        self.table = table
        super().__init__(
            f"table {table}: the run that started this worker (pid {parent_pid}) ended or no "
            "longer holds the lake lock; nothing of the table was published",
            hint="run the command again: it resumes from the last published state",
        )


class BronzeNameWarning(UserWarning):
    """A Bronze file whose name cannot be a table name is skipped (the others still run)."""


class SettingsWarning(UserWarning):
    """An AIMS_* environment variable looks like a setting but is not one (a typo?)."""


def os_error_as_aims(exc: OSError, path: Path | str | None, doing: str) -> AimsError:
    """The AimsError a user should see for an OSError met while ``doing`` something."""
    import errno

    where = path if path is not None else (exc.filename or "?")
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return DiskFullError(where, doing)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyError(exc.filename or where, doing)
    return AimsError(f"cannot {doing} at {where}: {os_error_message(exc)}")
