"""Great Expectations as its users know it: a Context, Checkpoints, ValidationDefinitions, Data Docs.

Validation (:mod:`aims_nb_utils.validation`) hands GX one prepared frame at a time (a column's
present values, or the table's schema frame, see docs/architecture.md). Each frame is validated by
``Checkpoint.run(batch_parameters={"dataframe": frame})``: per table, one Expectation Suite, one
ValidationDefinition and one Checkpoint named ``aims_<table>`` are added to an ephemeral Context
(reused for every frame of that table, their suite saved with the frame's expectations), so
results come out of GX's own run path (freshness checks, validation results store, checkpoint
result). The stored results are removed after each run: the ephemeral store is in memory and a
run over the lake would otherwise keep every result of every column.

Data Docs (``validate-dq --data-docs`` or the ``data_docs`` setting) are built after validation
by GX's ``UpdateDataDocsAction`` on a Checkpoint ``aims_validate_dq`` whose ValidationDefinitions
are the validated tables (their rule files exported as suites, :mod:`aims_nb_utils.gx_suites`):
one page per table with every rule as GX computed it, written under ``outputs/data_docs``.
"""

from __future__ import annotations

import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

from . import gx_compat

DATA_DOCS_SITE = "aims_data_docs"
DATA_DOCS_CHECKPOINT = "aims_validate_dq"
# One GX validation at a time per process: the memoised property and warning filters are
# process-wide, and GX's validator is not meant to be shared between threads.
_GX_LOCK = threading.Lock()


def checkpoint_name(table: str) -> str:
    return f"aims_{table}" if not table.startswith("aims_") else table


class GxRunner:
    """The GX objects of one process: ephemeral context, data source (pandas, or Spark with
    ``spark=True``: batches are then Spark DataFrames), asset, batch definition, and the current
    table's suite / ValidationDefinition / Checkpoint (``result_format`` is its Checkpoint's)."""

    def __init__(self, spark: bool = False, result_format: Any = "BASIC") -> None:
        self.gx = gx_compat.import_gx()
        gx_compat.check()
        gx_compat.disable_batch_fingerprint()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = self.gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        if spark:  # the caller caches its DataFrame when it wants to (GX would never unpersist)
            self.datasource = self.context.data_sources.add_spark("aims_bronze", persist=False)
        else:
            self.datasource = self.context.data_sources.add_pandas("aims_bronze")
        self.result_format = result_format
        asset = self.datasource.add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        self._table: str | None = None
        self._checkpoint: Any = None

    def _checkpoint_for(self, table: str) -> Any:
        """The table's Checkpoint (one ValidationDefinition), the previous table's removed."""
        if self._table == table and self._checkpoint is not None:
            return self._checkpoint
        self._drop_table_objects()
        gx, name = self.gx, checkpoint_name(table)
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=self.batch_definition, suite=suite)
        )
        self._checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[],
                result_format=self.result_format,
            )
        )
        self._table = table
        return self._checkpoint

    def _drop_table_objects(self) -> None:
        if self._table is None:
            return
        name = checkpoint_name(self._table)
        self.context.checkpoints.delete(name)
        self.context.validation_definitions.delete(name)
        self.context.suites.delete(name)
        self._table = self._checkpoint = None

    def validate(self, table: str, frame: Any, expectations: list[Any]) -> list[Any]:
        """Run ``expectations`` on ``frame`` through the table's Checkpoint; GX's results."""
        with _GX_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checkpoint = self._checkpoint_for(table)
            suite = checkpoint.validation_definitions[0].suite
            suite.expectations = list(expectations)
            suite.save()
            try:
                with gx_compat.memoized_configuration():
                    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
            finally:
                gx_compat.forget_batches(self.datasource.get_execution_engine())
            results: list[Any] = []
            store = self.context.validation_results_store
            for key, suite_result in outcome.run_results.items():
                results.extend(suite_result.results)
                if store.has_key(key):
                    store.remove_key(key)
            return results


# --- Data Docs ----------------------------------------------------------------------------------


def _site_config(folder: Path) -> dict[str, Any]:
    return {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(folder.resolve()),
        },
    }


def build_data_docs(
    folder: Path,
    tables: dict[str, tuple[Any, list[Any], dict[str, Any]]],
    run_id: str,
    run_time: Any,
) -> Path:
    """Write GX Data Docs for the validated tables into ``folder`` (replaced); its index.html.

    ``tables`` maps a table to (rule file, its rule results in rule order, statistics); every
    page shows the table's suite (the rule file exported, :func:`gx_suites.rule_file_to_suite`)
    and one result per rule as validation computed it. Built by GX's UpdateDataDocsAction of a
    Checkpoint whose ValidationDefinitions are the tables."""
    from . import gx_suites

    gx = gx_compat.import_gx()
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context import set_context
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(site_name=DATA_DOCS_SITE, site_config=_site_config(folder))
    asset = context.data_sources.add_pandas("aims_bronze").add_dataframe_asset("tables")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_table")
    gx_run_id = RunIdentifier(run_name=run_id, run_time=run_time)
    definitions, results = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for table, (rule_file, rule_results, statistics) in tables.items():
            document = gx_suites.rule_file_to_suite(rule_file)
            suite = context.suites.add(gx.ExpectationSuite(**document))
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
                )
            )
            evrs = [
                ExpectationValidationResult(
                    success=rule.success,
                    expectation_config=expectation.configuration,
                    result=_result_dict(rule),
                    exception_info={
                        "raised_exception": bool(rule.error),
                        "exception_message": rule.error,
                        "exception_traceback": rule.error,  # GX renders it as text
                    },
                )
                for expectation, rule in zip(suite.expectations, rule_results, strict=True)
            ]
            suite_result = ExpectationSuiteValidationResult(
                success=all(r.success for r in rule_results),
                results=evrs,
                suite_name=suite.name,
                statistics=statistics,
                meta={
                    "great_expectations_version": gx.__version__,
                    "run_id": gx_run_id,
                    "validation_time": gx_run_id.run_time,
                    "active_batch_definition": {"datasource_name": "aims_bronze", "table": table},
                    "aims_table": table,
                },
            )
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
                run_id=gx_run_id,
                batch_identifier=table,
            )
            context.validation_results_store.store_validation_results(
                suite_validation_result=suite_result,
                suite_validation_result_identifier=key,
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            )
            results[key] = suite_result
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=DATA_DOCS_CHECKPOINT,
                validation_definitions=definitions,
                actions=[
                    gx.checkpoint.UpdateDataDocsAction(
                        name="update_data_docs", site_names=[DATA_DOCS_SITE]
                    )
                ],
            )
        )
        outcome = CheckpointResult(
            run_id=gx_run_id, run_results=results, checkpoint_config=checkpoint
        )
        set_context(context)  # an action no Checkpoint has run resolves the current context
        for action in checkpoint.actions:
            action.run(checkpoint_result=outcome)
    # GX logs a page it fails to render and goes on: a table without its page is an error here
    missing = [t for t in tables if not any((folder / "validations" / t).rglob("*.html"))]
    if missing or not (folder / "index.html").is_file():
        raise gx_compat.GxCompatibilityError(
            f"GX Data Docs in {folder} lack the page of {', '.join(missing) or 'the index'} "
            "(GX logged why above); the validation results themselves were written",
            hint="report it with the rule file of that table",
        )
    _add_offline_list(folder, {t: (s.success, s.statistics) for t, s in _by_table(results)})
    return folder / "index.html"


def _by_table(results: dict[Any, Any]) -> list[tuple[str, Any]]:
    return sorted((str(r.meta["aims_table"]), r) for r in results.values())


def _add_offline_list(folder: Path, tables: dict[str, tuple[bool, dict[str, Any]]]) -> None:
    """Put a plain list of the tables, linked to their pages, at the top of GX's index.html.

    GX's index builds its table of results with jQuery and bootstrap-table loaded from public
    CDNs: opened offline (a lakehouse download, a closed network) it lists nothing. This list is
    static HTML, so every table's page is one click away with or without those scripts."""
    import html

    index = folder / "index.html"
    rows = []
    for table, (success, statistics) in tables.items():
        (page,) = sorted((folder / "validations" / table).rglob("*.html"))[-1:]
        status = "Passed" if success else "Failed"
        rows.append(
            f'<li><a href="{html.escape(page.relative_to(folder).as_posix())}">'
            f"{html.escape(table)}</a>: {status}, "
            f"{statistics.get('successful_expectations', '?')} of "
            f"{statistics.get('evaluated_expectations', '?')} rules passed "
            f'(<a href="expectations/{html.escape(table)}.html">rules</a>)</li>'
        )
    block = (
        '<div id="aims-offline-index" class="container" style="padding-top:60px">'
        f"<h4>Validated tables ({len(rows)})</h4><ul>{''.join(rows)}</ul></div>"
    )
    text = index.read_text(encoding="utf-8")
    at = text.find(">", text.find("<body")) + 1 if "<body" in text else len(text)
    from .io import atomic_write_text

    atomic_write_text(index, text[:at] + block + text[at:])


def _result_dict(rule: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("element_count", "unexpected_count", "unexpected_percent", "observed_value"):
        value = getattr(rule, key)
        if value is not None:
            out[key] = value
    if rule.partial_unexpected_list:
        out["partial_unexpected_list"] = list(rule.partial_unexpected_list)
    return out
