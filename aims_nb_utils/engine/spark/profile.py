"""Profiling under the spark engine.

Not on Spark yet: the profile statistics (``profiling.profile_table``: distinct values with
counts, length histograms, conformance per type pattern, key and foreign-key discovery) run on
the arrow engine, which reads one column at a time, and the rule files it writes are the ones
both engines validate with (rule files do not depend on the engine). A warning says so, so a
lake that does not fit one machine is not profiled by surprise on the driver.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ...errors import SettingsWarning

if TYPE_CHECKING:
    from ...profiling import ProfileRun
    from ...settings import Settings


def profile_tables(settings: Settings, **options: Any) -> ProfileRun:
    """``profiling.profile_tables`` on the arrow engine (see the module docstring)."""
    warnings.warn(
        "engine spark: profiling runs on the arrow engine (one column at a time on the driver);"
        " Spark profile statistics are not implemented yet",
        SettingsWarning,
        stacklevel=2,
    )
    from ...profiling import profile_tables as arrow_profile

    arrow = _with_engine(settings, "arrow")
    return arrow_profile(arrow, **options)


def _with_engine(settings: Settings, engine: str) -> Settings:
    from dataclasses import replace

    values = dict(settings.values)
    values["engine"] = engine
    return replace(settings, values=values)
