"""Every use of a private Great Expectations internal, in one place, each checked by a test.

GX's public API (Context, Checkpoint, ValidationDefinition, ExpectationSuite, actions) is used
in :mod:`aims_nb_utils.gx_run`. Three internals make validation affordable on millions of rows
(see docs/architecture.md, "How GX is used"); none changes a result:

* ``great_expectations.execution_engine.pandas_execution_engine.HASH_THRESHOLD``: the pandas
  engine hashes every batch smaller than this many bytes (a full pass over the frame) to record
  a fingerprint nothing here reads. Set to 0.
* ``great_expectations.expectations.expectation.Expectation.configuration`` (a property): GX
  rebuilds it ~70 times per rule during one validation; memoised for one validation at a time.
* the execution engine's ``_metric_cache`` and its batch manager's ``_batch_data_cache``: every
  batch of the reused asset has the same id and the engine keeps each resolved metric (full
  length condition series included) for the life of the process; cleared after each run.
* ``great_expectations.expectations.metrics.map_metric_provider.
  column_map_condition_auxilliary_methods._spark_column_map_condition_values``, GX's Spark
  provider of every column map rule's ``unexpected_values`` (found in GX's metric registry):
  asked for no value (``partial_unexpected_count: 0``) it still builds and plans a query per rule.
  Answered ``[]`` without a query while the spark engine counts (:func:`spark_values_on_demand`).

:func:`problems` names every internal that is missing or changed shape in the installed GX; the
test suite (tests/test_gx_compat.py) fails on any, so a GX upgrade that breaks one is noticed
before it silently slows validation down or leaks memory. :func:`check` raises the same at the
start of validation. The supported GX range is the ``great-expectations`` line of pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import AimsError

PANDAS_ENGINE_MODULE = "great_expectations.execution_engine.pandas_execution_engine"
SPARK_VALUES_MODULE = (
    "great_expectations.expectations.metrics.map_metric_provider."
    "column_map_condition_auxilliary_methods"
)
SPARK_VALUES_FUNCTION = "_spark_column_map_condition_values"


class GxCompatibilityError(AimsError):
    """The installed Great Expectations lacks an internal this package relies on."""


@contextmanager
def without_iri_grammar() -> Iterator[None]:
    """Import GX without building rfc3987_syntax's IRI grammar: a third of GX's start-up.

    GX imports altair, altair imports jsonschema, and jsonschema's format module imports
    rfc3987_syntax when it is installed (Jupyter's dependencies bring it), which compiles a Lark
    grammar at import. Nothing here validates JSON "iri" formats. The module is hidden only while
    jsonschema's format module is first imported; when jsonschema is already loaded (a notebook
    kernel that imported it) nothing changes."""
    hide = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment] - import raises ImportError
    try:
        yield
    finally:
        if hide and sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]


def import_gx() -> Any:
    """``great_expectations``, imported with analytics off and without the IRI grammar."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    with without_iri_grammar():
        import great_expectations as gx
    return gx


def problems() -> list[str]:
    """What the installed GX lacks of the internals above, one sentence each ([] when fine)."""
    import importlib

    gx = import_gx()
    found: list[str] = []
    engine_module = importlib.import_module(PANDAS_ENGINE_MODULE)
    threshold = getattr(engine_module, "HASH_THRESHOLD", None)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        found.append(
            f"{PANDAS_ENGINE_MODULE}.HASH_THRESHOLD is gone or not a number "
            f"({threshold!r}): the batch fingerprint can no longer be switched off"
        )
    else:
        import inspect

        source = inspect.getsource(engine_module.PandasExecutionEngine.get_batch_data_and_markers)
        if "HASH_THRESHOLD" not in source:
            found.append(
                "PandasExecutionEngine.get_batch_data_and_markers no longer reads HASH_THRESHOLD: "
                "setting it has no effect"
            )
    from great_expectations.expectations.expectation import Expectation

    prop = Expectation.__dict__.get("configuration")
    if not isinstance(prop, property) or prop.fget is None or prop.fset is not None:
        found.append(
            "great_expectations.expectations.expectation.Expectation.configuration is no longer "
            f"a read-only property ({type(prop).__name__}): it cannot be memoised"
        )
    engine = gx.execution_engine.PandasExecutionEngine()
    if not isinstance(getattr(engine, "_metric_cache", None), dict):
        found.append(
            "PandasExecutionEngine._metric_cache is gone or not a dict: resolved metrics can no "
            "longer be dropped after a validation (memory grows per column validated)"
        )
    manager = getattr(engine, "batch_manager", None)
    if not isinstance(getattr(manager, "_batch_data_cache", None), dict):
        found.append(
            "the execution engine's batch_manager._batch_data_cache is gone or not a dict: "
            "validated frames can no longer be released"
        )
    values = getattr(importlib.import_module(SPARK_VALUES_MODULE), SPARK_VALUES_FUNCTION, None)
    registered = [fn for _, fn in _spark_value_providers()]
    if values is None or values not in registered:
        found.append(
            f"{SPARK_VALUES_MODULE}.{SPARK_VALUES_FUNCTION} is gone or no longer GX's Spark "
            "provider of column map unexpected_values: the spark engine plans a query per rule"
        )
    return found


def _spark_value_providers() -> list[tuple[dict[str, Any], Any]]:
    """(providers entry, function) of every metric GX computes on Spark with the column map
    ``unexpected_values`` function (one per column map metric registered so far)."""
    import importlib

    from great_expectations.expectations import registry

    values = getattr(importlib.import_module(SPARK_VALUES_MODULE), SPARK_VALUES_FUNCTION, None)
    out = []
    for definition in getattr(registry, "_registered_metrics", {}).values():
        providers = definition.get("providers") if isinstance(definition, dict) else None
        entry = providers.get("SparkDFExecutionEngine") if isinstance(providers, dict) else None
        if isinstance(entry, tuple) and len(entry) == 2 and entry[1] is values:
            out.append((providers, entry[1]))
    return out


@contextmanager
def spark_values_on_demand() -> Iterator[None]:
    """While the block runs, GX's Spark ``unexpected_values`` of a column map rule asked for no
    value (``partial_unexpected_count`` 0, not COMPLETE) is ``[]`` without building a query.

    GX 1.x computes that metric for every map rule unless the result format is BOOLEAN_ONLY
    (which drops the counts too); on Spark each is a ``limit(0)`` query that Spark still
    analyses and plans, the largest cost of a validation with counts only. Any other request
    goes to GX's own function; the registry is restored after the block."""
    swapped = _spark_value_providers()
    if not swapped:
        yield
        return
    original = swapped[0][1]

    def values(cls: Any, execution_engine: Any, metric_domain_kwargs: dict, **kwargs: Any) -> Any:
        value_kwargs = kwargs.get("metric_value_kwargs") or {}
        result_format = value_kwargs.get("result_format") or {}
        if (
            isinstance(result_format, dict)
            and result_format.get("result_format") != "COMPLETE"
            and result_format.get("partial_unexpected_count") == 0
        ):
            return []
        return original(cls, execution_engine, metric_domain_kwargs, **kwargs)

    values.__dict__.update(original.__dict__)  # metric_fn_type: how GX schedules it
    for providers, _ in swapped:
        providers["SparkDFExecutionEngine"] = (providers["SparkDFExecutionEngine"][0], values)
    try:
        yield
    finally:
        for providers, fn in swapped:
            providers["SparkDFExecutionEngine"] = (providers["SparkDFExecutionEngine"][0], fn)


def check() -> None:
    """Raise :class:`GxCompatibilityError` naming each internal the installed GX changed."""
    found = problems()
    if found:
        import great_expectations as gx

        raise GxCompatibilityError(
            f"great_expectations {gx.__version__} changed internals this package relies on: "
            + "; ".join(found),
            hint="install the great-expectations version pinned in pyproject.toml, or update "
            "aims_nb_utils/gx_compat.py for this release (tests/test_gx_compat.py)",
        )


def disable_batch_fingerprint() -> None:
    """Stop the pandas engine hashing every batch (a full pass over the frame nothing reads)."""
    import importlib

    importlib.import_module(PANDAS_ENGINE_MODULE).HASH_THRESHOLD = 0


@contextmanager
def memoized_configuration() -> Iterator[None]:
    """Compute each GX expectation's ``configuration`` once for the duration of the block.

    GX 1.x rebuilds an expectation's configuration (a pydantic ``dict()`` plus a regex over the
    class name) on every access, and its validator reads it once per kwarg: ~70 rebuilds per
    rule, half of all the time GX spends on a small table. Nothing mutates an expectation while
    it is validated (the validator works on deep copies), so the property is memoised for one
    validation only and restored afterwards: GX used elsewhere in the process is untouched.
    """
    from great_expectations.expectations.expectation import Expectation as GxExpectation

    original = GxExpectation.__dict__["configuration"]
    cache: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = cache.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        value = original.fget(self)
        cache[id(self)] = (self, value)  # holding self keeps its id from being reused
        return value

    GxExpectation.configuration = property(configuration, doc=original.__doc__)
    try:
        yield
    finally:
        GxExpectation.configuration = original
        cache.clear()


def forget_batches(engine: Any) -> None:
    """Drop the metrics and batch data ``engine`` keeps after a validation.

    Every batch of our asset has the same id and the engine caches each resolved metric by id
    for the life of the process, including each map rule's full-length condition series
    (measured: one worker grew from 0.4 to 1.7 GB over the 36 columns of aims_assetlocations).
    Nothing reads those entries again: each of our validations is a new frame."""
    cache = getattr(engine, "_metric_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    manager = getattr(engine, "batch_manager", None)
    data_cache = getattr(manager, "_batch_data_cache", None)
    if isinstance(data_cache, dict):
        data_cache.clear()
