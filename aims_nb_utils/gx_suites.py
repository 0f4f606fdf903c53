"""Rule files <-> Great Expectations 1.x Expectation Suites (JSON), both ways, nothing lost.

A rule file (``config/data_quality/<table>_validation.yml``) and a GX 1.x suite say the same
thing in two spellings. The export is a suite ``gx.ExpectationSuite(**json)`` loads:

* ``expectation_type`` -> ``type``; ``kwargs`` as they are; the rule's ``meta`` kept whole in
  the expectation's ``meta`` (``severity``, ``reference``, ``quarantine``, ``generated_by``,
  ``observed_*``, ``description``...), so the import gives back the same rule.
* GX's own ``severity`` has three levels: ``critical`` -> critical, ``high`` and ``medium`` ->
  warning, ``low`` -> info. ``meta.severity`` stays the platform's (four levels); a suite written
  by a GX user without it gets critical -> critical, warning -> medium, info -> low (no severity
  at all is GX's default, critical).
* ``meta.description`` is also GX's ``description`` (shown in Data Docs).
* A cross-table rule (``expect_column_values_to_be_in_set`` with ``meta.reference`` and no
  ``value_set``) has no value set in the file: validation reads the parent column. GX requires
  one, so the export writes ``value_set: {"$PARAMETER": "reference__<parent>__<column>"}`` (a GX
  suite parameter a GX user can pass at run time); the import drops that parameter again.
* Table-level fields (``quality_thresholds``, ``keys``, ``types``, ``data_source``,
  ``validation_name``, ``description``, ``generated_at`` and any other top-level key) go to the
  suite's ``meta.aims_rule_file``; the suite is named after the table.

The import builds the rule file through :func:`aims_nb_utils.rules.parse_rule_file`, the one
parser of rule files, so an imported suite meets every check a hand-written file does.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import AimsError, RuleFileError
from .io import atomic_write_text, validate_table_name
from .rules import (
    RULE_FILE_SUFFIX,
    RuleFile,
    dump_rule_file,
    load_rule_file,
    parse_rule_file,
    table_from_rule_path,
)

SUITE_META_KEY = "aims_rule_file"
REFERENCE_PARAMETER_PREFIX = "reference__"
TO_GX_SEVERITY = {"critical": "critical", "high": "warning", "medium": "warning", "low": "info"}
FROM_GX_SEVERITY = {"critical": "critical", "warning": "medium", "info": "low"}
SUITE_SUFFIX = ".json"


class SuiteError(AimsError):
    """A GX suite cannot be exported or imported (names the file and what to fix)."""


def _json_safe(value: Any, where: str) -> Any:
    """YAML can hold what JSON cannot (dates, NaN): refuse rather than change a value silently."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise SuiteError(f"{where} = {value!r} cannot be written to JSON", hint="use a number")
    if isinstance(value, (datetime, date)):
        raise SuiteError(
            f"{where} = {value!r} is a YAML date, which JSON cannot keep as a date",
            hint="quote it in the rule file ('2024-01-31') so it is text",
        )
    return value


def reference_parameter(parent: str, column: str) -> str:
    return f"{REFERENCE_PARAMETER_PREFIX}{parent}__{column}"


def rule_file_to_suite(rule_file: RuleFile) -> dict[str, Any]:
    """The rule file as a GX 1.x Expectation Suite document (``gx.ExpectationSuite(**doc)``)."""
    where = str(rule_file.path or rule_file.table)
    table_fields = rule_file.to_dict()
    table_fields.pop("expectations")
    expectations: list[dict[str, Any]] = []
    for index, rule in enumerate(rule_file.expectations):
        kwargs = dict(rule.kwargs)
        if rule.reference is not None and "value_set" not in kwargs:
            kwargs["value_set"] = {"$PARAMETER": reference_parameter(*rule.reference)}
        entry: dict[str, Any] = {
            "type": rule.expectation_type,
            "kwargs": kwargs,
            "meta": dict(rule.meta),
            "severity": TO_GX_SEVERITY[rule.severity],
        }
        if isinstance(rule.meta.get("description"), str):
            entry["description"] = rule.meta["description"]
        expectations.append(_json_safe(entry, f"{where}: expectations[{index}]"))
    return {
        "name": rule_file.table,
        "expectations": expectations,
        "meta": {SUITE_META_KEY: _json_safe(table_fields, where)},
        "notes": rule_file.description or None,
    }


def suite_to_rule_file(document: Any, path: Path, table: str | None = None) -> RuleFile:
    """A GX 1.x suite document back as a rule file (checked like any rule file) for ``path``."""
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        raise RuleFileError(path, "is not a GX Expectation Suite: no 'expectations' list")
    meta = document.get("meta") or {}
    table_fields = dict(meta.get(SUITE_META_KEY) or {}) if isinstance(meta, dict) else {}
    if not table_fields.get("validation_name") and document.get("name"):
        table_fields["validation_name"] = str(document["name"])
    items: list[dict[str, Any]] = []
    for index, item in enumerate(document["expectations"]):
        if not isinstance(item, dict) or not (item.get("type") or item.get("expectation_type")):
            raise RuleFileError(path, f"expectations[{index}] has no type")
        kwargs = dict(item.get("kwargs") or {})
        rule_meta = dict(item.get("meta") or {})
        value_set = kwargs.get("value_set")
        if (
            isinstance(value_set, dict)
            and str(value_set.get("$PARAMETER", "")).startswith(REFERENCE_PARAMETER_PREFIX)
            and isinstance(rule_meta.get("reference"), dict)
        ):
            del kwargs["value_set"]  # validation reads the parent column named in meta.reference
        if "severity" not in rule_meta:  # GX's default severity is critical
            gx_severity = str(item.get("severity") or "critical").lower()
            if gx_severity not in FROM_GX_SEVERITY:
                raise RuleFileError(
                    path,
                    f"expectations[{index}]: unknown GX severity {item.get('severity')!r}",
                    hint=f"use one of {', '.join(FROM_GX_SEVERITY)}",
                )
            rule_meta["severity"] = FROM_GX_SEVERITY[gx_severity]
        if "description" not in rule_meta and isinstance(item.get("description"), str):
            rule_meta["description"] = item["description"]
        entry: dict[str, Any] = {
            "expectation_type": item.get("type") or item.get("expectation_type"),
            "kwargs": kwargs,
        }
        if rule_meta:
            entry["meta"] = rule_meta
        items.append(entry)
    return parse_rule_file({**table_fields, "expectations": items}, path, table)


def check_loads_in_gx(document: dict[str, Any], where: str) -> None:
    """Raise SuiteError unless ``gx.ExpectationSuite(**document)`` keeps every expectation.

    GX logs and drops an expectation it rejects instead of raising, so the count is checked."""
    import warnings

    from .gx_compat import import_gx

    gx = import_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            suite = gx.ExpectationSuite(**document)
        except Exception as exc:  # noqa: BLE001 - pydantic/GX errors: name the file
            raise SuiteError(
                f"{where}: GX {gx.__version__} refuses the suite: {str(exc).splitlines()[0]}"
            ) from None
    if len(suite.expectations) != len(document["expectations"]):
        kept = {(e.expectation_type, json.dumps(e.kwargs, sort_keys=True, default=str)) for e in suite.expectations}  # fmt: skip
        lost = [
            f"expectations[{i}] {e['type']}({e['kwargs'].get('column')})"
            for i, e in enumerate(document["expectations"])
            if (e["type"], json.dumps(e["kwargs"], sort_keys=True, default=str)) not in kept
        ]
        raise SuiteError(
            f"{where}: GX {gx.__version__} dropped {len(document['expectations']) - len(suite.expectations)}"
            f" expectation(s) as invalid: {', '.join(lost) or 'see the GX log'}",
            hint="fix those rules' kwargs in the rule file",
        )


def export_suites(
    rules_dir: Path, out_dir: Path, tables: list[str] | None = None, check: bool = True
) -> list[Path]:
    """Write every rule file of ``rules_dir`` (or ``tables``) as ``out_dir/<table>.json``."""
    paths = sorted(Path(rules_dir).glob(f"*{RULE_FILE_SUFFIX}"))
    if tables is not None:
        wanted = set(tables)
        paths = [p for p in paths if table_from_rule_path(p) in wanted]
        missing = wanted - {table_from_rule_path(p) for p in paths}
        if missing:
            raise SuiteError(
                f"no rule file for {', '.join(sorted(missing))} in {rules_dir}",
                hint="run `python -m aims_nb_utils profile` for them first",
            )
    if not paths:
        raise SuiteError(
            f"no *{RULE_FILE_SUFFIX} files in {rules_dir}",
            hint="run `python -m aims_nb_utils profile` first, or pass --rules-dir",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in paths:
        rule_file = load_rule_file(path)
        document = rule_file_to_suite(rule_file)
        if check:
            check_loads_in_gx(document, str(path))
        target = out_dir / f"{rule_file.table}{SUITE_SUFFIX}"
        atomic_write_text(target, json.dumps(document, indent=2, allow_nan=False) + "\n")
        written.append(target)
    return written


def import_suite(
    suite_path: Path, rules_dir: Path, table: str | None = None, force: bool = False
) -> Path:
    """Write the GX suite ``suite_path`` as ``rules_dir/<table>_validation.yml``; the path.

    The table is ``table``, else the suite's name. An existing rule file is replaced only with
    ``force`` (it may hold hand edits)."""
    suite_path = Path(suite_path)
    try:
        document = json.loads(suite_path.read_text())
    except OSError as exc:
        raise SuiteError(f"cannot read {suite_path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{suite_path} is not JSON: {exc}") from None
    name = table or (document.get("name") if isinstance(document, dict) else None)
    if not name:
        raise SuiteError(f"{suite_path}: the suite has no name", hint="pass --table NAME")
    name = validate_table_name(str(name))
    target = Path(rules_dir) / f"{name}{RULE_FILE_SUFFIX}"
    rule_file = suite_to_rule_file(document, target, name)
    if target.exists() and not force:
        raise SuiteError(
            f"{target} exists",
            hint="pass --force to replace it (hand edits in it are lost), or --table NAME",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, dump_rule_file(rule_file))
    return target
