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
