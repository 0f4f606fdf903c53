"""The SparkSession the spark engine runs on, and the settings it needs from it.

In a Fabric Spark notebook the session exists before the first cell and is used as it is. Locally
(tests, CI, benchmarks) one is started on ``local[2]`` with the JRE of the machine, and nothing is
downloaded at run time (no ``spark.jars.packages``): parquet is built into Spark, and Fabric's Spark
has Delta built in. Two settings are applied to whichever session runs: the session time zone is
UTC (dates are parsed and compared as UTC microseconds, as the arrow engine stores them) and
parquet timestamps are written as INT64 microseconds (what pyarrow and Delta readers expect, not
Spark's legacy INT96).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from .. import AUTO_CONF, EngineError, active_spark_session

LOCAL_MASTER = "local[2]"
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    # Off locally: adaptive execution runs every shuffle stage as a Spark job of its own (each
    # pays scheduling), and its gains (coalescing many shuffle partitions, skew joins) do not
    # apply to 4 partitions on 2 cores. A Fabric session keeps its own setting.
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
}


DRIVER_MEMORY_VARIABLE = "AIMS_SPARK_DRIVER_MEMORY"


def local_driver_memory() -> str:
    """The heap of a local session's JVM (driver and executor in one): ``AIMS_SPARK_DRIVER_MEMORY``
    when set, else a quarter of the machine's memory between 1 and 8 GiB.

    Spark's own default (1 GiB) runs out on the largest AIMS table at full scale: the cached,
    prepared frame of a 2.2M-row table and the window sorts of its unique rules do not fit, and
    the JVM spends its time collecting garbage before it fails."""
    chosen = os.environ.get(DRIVER_MEMORY_VARIABLE, "").strip()
    if chosen:
        return chosen
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return "2g"
    return f"{min(8, max(1, total // 4 // 2**30))}g"


def _pyspark() -> Any:
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError(
            "engine 'spark' needs pyspark, which is not installed",
            hint="pip install 'aims-nb-utils[spark]' (pyspark 3.5), or set engine: arrow",
        ) from None
    return SparkSession


def local_session(master: str = LOCAL_MASTER, opt_out_of_auto: bool = False) -> Any:
    """Start (or return) a local SparkSession for tests, CI and benchmarks.

    ``opt_out_of_auto`` sets ``spark.aims.engine.auto=false`` so the session does not turn
    ``engine: auto`` into spark for code that did not ask for it (the test suite's shared one)."""
    spark_session = _pyspark()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EngineError(
            "engine 'spark' needs a Java runtime and none is on PATH",
            hint="apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME)",
        )
    # Python workers (the row fingerprint runs in them) use this interpreter, which has pyarrow,
    # DuckDB and this package, not whatever ``python3`` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = spark_session.builder.master(master).appName("aims-dq")
    conf = {**LOCAL_CONF, "spark.driver.memory": local_driver_memory(), **SESSION_CONF}
    for key, value in conf.items():
        builder = builder.config(key, value)
    if opt_out_of_auto:
        builder = builder.config(AUTO_CONF, "false")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def get_session() -> Any:
    """The active session (Fabric's, or one started earlier), else a new local one; the
    platform's two session settings applied (see the module docstring)."""
    session = active_spark_session()
    if session is None:
        session = local_session()
    for key, value in SESSION_CONF.items():
        if session.conf.get(key, None) != value:
            session.conf.set(key, value)
    return session


def describe(session: Any) -> dict[str, Any]:
    """Engine, Spark version, master and executors (notebook 00's environment cell)."""
    context = session.sparkContext
    try:
        executors = context._jsc.sc().getExecutorMemoryStatus().size()  # noqa: SLF001
    except Exception:  # noqa: BLE001 - not every cluster exposes it
        executors = None
    return {
        "engine": "spark",
        "spark": session.version,
        "master": context.master,
        "executors": executors,
        "default_parallelism": context.defaultParallelism,
    }
