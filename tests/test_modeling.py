"""Anomaly detection, forecast and DQ matrix on metric histories built to have known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_settings

from aims_nb_utils import modeling, state
from aims_nb_utils.errors import AimsError
from aims_nb_utils.insights import history_from_frames


def _history(
    row_counts: dict[str, list[float]] | None = None,
    nulls: dict[tuple[str, str], list[float]] | None = None,
    scores: dict[str, list[float]] | None = None,
):
    tables, columns = [], []
    n = max(
        len(v)
        for v in [*(row_counts or {}).values(), *(nulls or {}).values(), *(scores or {}).values()]
    )
    runs = [
        (
            f"2025{i // 28 + 1:02d}{i % 28 + 1:02d}_000000_{i:06d}",
            f"2025-{i // 28 + 1:02d}-{i % 28 + 1:02d}T00:00:00+00:00",
        )
        for i in range(n)
    ]
    for table in sorted(set(row_counts or {}) | set(scores or {})):
        for i, (run_id, run_at) in enumerate(runs):
            tables.append(
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": table,
                    "status": "PASSED",
                    "row_count": (row_counts or {}).get(table, [100] * n)[i],
                    "quality_score": (scores or {}).get(table, [90.0] * n)[i],
                }
            )
    for (table, column), values in (nulls or {}).items():
        for i, (run_id, run_at) in enumerate(runs):
            columns.append(
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": table,
                    "column_name": column,
                    "null_percent": values[i],
                }
            )
    return history_from_frames(
        pd.DataFrame(
            tables,
            columns=[
                "run_id",
                "run_at",
                "table_name",
                "status",
                "row_count",
                "quality_score",
                *modeling.DIMENSIONS,
            ],
        ),
        columns=pd.DataFrame(
            columns,
            columns=[
                "run_id",
                "run_at",
                "table_name",
                "column_name",
                "null_percent",
                "distinct_count",
            ],
        ),
    )


def test_robust_zscore_uses_median_and_mad() -> None:
    z, median, mad = modeling.robust_zscore(15.0, np.array([10, 12, 11, 13, 9]))
    assert (median, mad) == (11.0, 1.0)
    assert z == pytest.approx(0.6745 * 4)
    # one wild value in the baseline barely moves median and MAD; a mean/std z-score is swamped
    baseline = np.array([10, 12, 11, 13, 9, 1000])
    z2, median2, mad2 = modeling.robust_zscore(15.0, baseline)
    assert (median2, mad2) == (11.5, 1.5)
    assert z2 == pytest.approx(0.6745 * 3.5 / 1.5)
    classical = (15.0 - baseline.mean()) / baseline.std()
    assert abs(classical) < 0.5 < z2


def test_injected_row_count_jump_is_flagged_and_named() -> None:
    history = _history(
        row_counts={
            "aims_assets": [1000, 1010, 990, 1005, 995, 1000, 120],  # the export lost 88% of rows
            "aims_routes": [500, 505, 495, 500, 502, 498, 501],
        }
    )
    anomalies = modeling.detect_anomalies(history)
    assert modeling.anomalous_tables(anomalies) == ["aims_assets"]
    row = anomalies.iloc[0]
    assert (row["metric"], row["run_index"], bool(row["is_latest"])) == ("row_count", 6, True)
    assert bool(row["z_flag"]) and bool(row["rate_flag"])
    assert row["change"] == pytest.approx(120 / 1000)
    assert "rows 1,000 -> 120" in row["reason"]
    assert len(anomalies) == 1


def test_flat_and_gently_noisy_series_raise_nothing() -> None:
    rng = np.random.default_rng(3)
    noisy = (10_000 * (1 + rng.normal(0, 0.005, 12))).round().tolist()
    history = _history(
        row_counts={"aims_flat": [250] * 12, "aims_noisy": noisy},
        nulls={
            ("aims_flat", "DESCRIPTION"): [12.5] * 12,
            ("aims_noisy", "DESCRIPTION"): (12 + rng.normal(0, 0.2, 12)).tolist(),
        },
    )
    points = modeling.score_series(modeling.metric_series(history))
    assert len(points) == 3 * 2 * 12  # row_count, table and column null rate, per table and run
    assert not points["is_anomaly"].any()
    flat = points[points["table_name"] == "aims_flat"]
    assert (flat["robust_z"].dropna() == 0).all()


def test_null_rate_jump_names_the_column() -> None:
    history = _history(
        nulls={
            ("aims_assets", "SITEID"): [1.0, 1.2, 0.9, 1.1, 1.0, 41.0],
            ("aims_assets", "ASSETNUM"): [0.0] * 6,
        }
    )
    anomalies = modeling.detect_anomalies(history, latest_only=True)
    column = anomalies[anomalies["metric"] == "null_percent"]
    assert list(column["column_name"]) == ["SITEID"]
    assert column.iloc[0]["change"] == pytest.approx(40.0)
    assert "null rate 1.00% -> 41.00% (+40.00 points" in column.iloc[0]["reason"]
    # the table's share of null cells moved by 20 points: flagged too
    assert list(anomalies[anomalies["metric"] == "table_null_percent"]["table_name"]) == [
        "aims_assets"
    ]


def test_rate_of_change_works_from_the_second_run_z_score_only_with_history() -> None:
    history = _history(row_counts={"aims_assets": [1000, 100]})
    points = modeling.score_series(modeling.metric_series(history))
    last = points[points["run_index"] == 1].iloc[0]
    assert bool(last["rate_flag"]) and math.isnan(last["robust_z"])  # 1 earlier run: no baseline


def test_empty_table_getting_rows_is_a_jump() -> None:
    history = _history(row_counts={"aims_assets": [0, 0, 500]})
    anomalies = modeling.detect_anomalies(history)
    assert list(anomalies["run_index"]) == [2] and math.isinf(anomalies.iloc[0]["change"])


def test_forecast_interval_contains_the_true_trend() -> None:
    rng = np.random.default_rng(11)
    x = np.arange(12)
    trend = 60 + 2.0 * x
    history = _history(scores={"aims_assets": (trend + rng.normal(0, 1.0, 12)).tolist()})
    forecast = modeling.forecast_scores(history, horizon=3, min_runs=4)
    assert list(forecast["step"]) == [1, 2, 3] and forecast["enough"].all()
    true_future = 60 + 2.0 * forecast["run_index"].to_numpy()
    assert ((forecast["lower"] <= true_future) & (true_future <= forecast["upper"])).all()
    assert forecast["slope_per_run"].iloc[0] == pytest.approx(2.0, abs=0.3)
    widths = (forecast["upper"] - forecast["lower"]).to_numpy()
    assert (np.diff(widths) > 0).all()  # further ahead, less certain
    assert (forecast["upper"] - forecast["lower"]).iloc[0] > 0


def test_forecast_is_clipped_to_percentages() -> None:
    history = _history(scores={"aims_assets": [90.0, 94.0, 97.0, 99.0, 100.0]})
    forecast = modeling.forecast_scores(history, horizon=3)
    assert forecast["upper"].max() == 100.0 and forecast["forecast"].max() <= 100.0


def test_forecast_with_too_few_runs_says_so() -> None:
    history = _history(scores={"aims_assets": [90.0, 91.0, 92.0]})
    forecast = modeling.forecast_scores(history, min_runs=4)
    assert len(forecast) == 1 and not forecast["enough"].iloc[0]
    assert math.isnan(forecast["forecast"].iloc[0])
    assert forecast["note"].iloc[0] == "3 runs recorded; a forecast needs at least 4"


def test_bad_parameters_name_the_parameter() -> None:
    with pytest.raises(modeling.ModelingError, match="min_runs=2"):
        modeling.forecast_scores(_history(scores={"t": [1.0, 2.0]}), min_runs=2)
    with pytest.raises(AimsError, match="row_rate_bounds"):
        modeling.AnomalyConfig(row_rate_bounds=(1.5, 2.0))


def test_dq_matrix_puts_worst_tables_first_and_keeps_missing_dimensions_empty() -> None:
    scores = pd.DataFrame(
        [
            {
                "table_name": "aims_good",
                "completeness": 100.0,
                "validity": 100.0,
                "uniqueness": 100.0,
                "consistency": None,
                "integrity": 100.0,
            },
            {
                "table_name": "aims_bad",
                "completeness": 40.0,
                "validity": 60.0,
                "uniqueness": None,
                "consistency": 20.0,
                "integrity": 100.0,
            },
        ]
    )
    matrix = modeling.dq_matrix(scores)
    assert list(matrix.index) == ["aims_bad", "aims_good"]
    assert list(matrix.columns) == list(modeling.DIMENSIONS)
    assert math.isnan(matrix.loc["aims_good", "consistency"])
    fig = modeling.figure_dq_matrix(matrix)
    assert fig.data[0].z[0][0] == 40.0 and fig.data[0].z[1][3] is None


def test_build_and_save_from_the_state_db(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    db = settings.paths.state_db
    counts = [1000, 1000, 1000, 1000, 300]
    for i, rows in enumerate(counts):
        run_id, at = f"2025010{i + 1}_000000_aaaaaa", f"2025-01-0{i + 1}T00:00:00+00:00"
        state.record_table_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": at,
                    "table_name": "aims_assets",
                    "status": "PASSED",
                    "row_count": rows,
                    "quality_score": 90.0 - i,
                    "completeness": 100.0,
                    "validity": 95.0 - i,
                },
            ],
        )
        state.record_column_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": at,
                    "table_name": "aims_assets",
                    "column_name": "SITEID",
                    "null_percent": 2.0,
                },
            ],
        )
    report = modeling.build_modeling(settings)
    assert report.anomalous_tables == ["aims_assets"]
    assert report.metrics()["anomalies_latest_run"] == 1
    assert report.matrix.loc["aims_assets", "validity"] == 91.0
    written = modeling.save_modeling(report, settings)
    saved = json.loads(written["anomalies_json"].read_text())
    assert saved["anomalous_tables"] == ["aims_assets"]
    assert saved["latest_run_id"] == "20250105_000000_aaaaaa"
    assert saved["anomalies"][0]["metric"] == "row_count"
    assert len(pd.read_parquet(written["forecast_parquet"])) == 3
    assert pd.read_parquet(written["anomalies_parquet"])["table_name"].tolist() == ["aims_assets"]
    assert modeling.load_saved_modeling(settings)["metrics"] == json.loads(
        json.dumps(report.metrics())
    )


def test_first_run_is_honest(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    state.record_table_metrics(
        settings.paths.state_db,
        [
            {
                "run_id": "r1",
                "run_at": "2025-01-01T00:00:00+00:00",
                "table_name": "aims_assets",
                "status": "PASSED",
                "row_count": 10,
                "quality_score": 100.0,
            },
        ],
    )
    report = modeling.build_modeling(settings)
    assert report.anomalies.empty
    assert "1 run recorded; rate-of-change checks need at least 2: not enough history yet" in (
        report.notes
    )
    assert report.forecast["note"].tolist() == ["1 run recorded; a forecast needs at least 4"]
    modeling.save_modeling(report, settings)  # empty frames still make valid files
    assert modeling.load_saved_modeling(settings)["anomalies"] == []


def test_unreadable_saved_output_names_the_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    path = modeling.anomalies_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(modeling.ModelingOutputError, match=str(path).replace(".", r"\.")):
        modeling.load_saved_modeling(settings)


def test_vectorised_scores_match_the_scalar_definition() -> None:
    """Every point's z-score equals robust_zscore over that series' previous `window` points."""
    rng = np.random.default_rng(5)
    config = modeling.AnomalyConfig(window=4)
    counts = (1000 + rng.normal(0, 30, 9)).round().tolist()
    nulls = (3 + rng.normal(0, 2, 9)).tolist()
    counts[4] = float("nan")  # a row count not recorded: a point without a value
    nulls[6] = float("nan")  # a null rate not measured: no point at all
    history = _history(row_counts={"aims_assets": counts}, nulls={("aims_assets", "NAME"): nulls})
    points = modeling.score_series(modeling.metric_series(history), config)
    observed_nulls = [v for v in nulls if not math.isnan(v)]
    for metric, values in (("row_count", counts), ("null_percent", observed_nulls)):
        series = points[points["metric"] == metric].sort_values("run_index")
        assert len(series) == len(values)
        for i, row in enumerate(series.itertuples()):
            if i < config.min_history:
                assert math.isnan(row.robust_z)
                continue
            baseline = np.array(values[max(0, i - config.window) : i])
            floor = (
                config.row_mad_floor_fraction * np.nanmedian(baseline)
                if metric == "row_count"
                else config.null_mad_floor
            )
            z, median, mad = modeling.robust_zscore(values[i], baseline, floor)
            if math.isnan(z):
                assert math.isnan(row.robust_z)
            else:
                assert (row.robust_z, row.baseline_median, row.baseline_mad) == pytest.approx(
                    (z, median, mad)
                )
