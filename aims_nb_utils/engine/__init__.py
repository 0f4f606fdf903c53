"""Choose the data engine a run uses: ``engine: arrow | spark | auto`` in the settings.

``auto`` picks ``spark`` when a SparkSession is active in this process (a Fabric Spark notebook
starts one before the first cell) and ``arrow`` otherwise. A session can opt out of ``auto`` with
the Spark conf ``spark.aims.engine.auto=false`` (the test suite's shared session does, so tests
that do not ask for Spark keep the arrow engine). The rule files are the same for both engines:
switching engine needs no re-profiling. See :mod:`aims_nb_utils.engine.base` for the contract.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import AimsError

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import Engine

AUTO_CONF = "spark.aims.engine.auto"


class EngineError(AimsError):
    """The engine the settings ask for cannot run here."""


def active_spark_session():  # noqa: ANN201 - pyspark is optional
    """The active SparkSession, or None (pyspark not imported or no session started)."""
    if "pyspark" not in sys.modules:  # never import pyspark just to find out
        return None
    try:
        from pyspark.sql import SparkSession

        return SparkSession.getActiveSession()
    except Exception:  # noqa: BLE001 - a broken JVM gateway means: no usable session
        return None


def resolve_engine_name(settings: Settings) -> str:
    """``arrow`` or ``spark``: the setting, with ``auto`` resolved (see the module docstring)."""
    name = str(getattr(settings, "engine", "auto") or "auto").lower()
    if name != "auto":
        return name
    session = active_spark_session()
    if session is None:
        return "arrow"
    try:
        opted_out = str(session.conf.get(AUTO_CONF, "true")).lower() == "false"
    except Exception:  # noqa: BLE001
        opted_out = False
    return "arrow" if opted_out else "spark"


def get_engine(settings: Settings) -> Engine:
    """The engine object for these settings (``spark`` raises EngineError without pyspark)."""
    name = resolve_engine_name(settings)
    if name == "spark":
        from .spark import SparkEngine

        return SparkEngine()
    from .arrow import ArrowEngine

    return ArrowEngine()


def is_arrow(settings: Settings) -> bool:
    """True when the arrow engine runs (the entry points' fast check before dispatching)."""
    return resolve_engine_name(settings) == "arrow"


__all__ = [
    "AUTO_CONF",
    "EngineError",
    "active_spark_session",
    "get_engine",
    "is_arrow",
    "resolve_engine_name",
]
