"""The training data's schema (pandera): types, ranges and missing values, checked before fitting.

Ranges match the serving schema (``serve.Features``): a row the endpoint would refuse must not
train the model either. Every violation is collected (``lazy=True``) and reported at once, with
its column, check, offending value and row; training stops with exit status 1 and that report.
Ground-truth files for live accuracy (``drift.py``) are checked against the same schema.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from .data import FEATURES, SENSITIVE_COLUMN, TARGET, sample_path

# Bounds per feature: (dtype, min, max). Keep in step with serve.Features and data.FEATURES.
BOUNDS: dict[str, tuple[type, float, float]] = {
    "tenure_months": (int, 0, 600),
    "monthly_spend": (float, 0, 100_000),
    "support_tickets": (int, 0, 1000),
    "usage_hours": (float, 0, 744),
}
MIN_ROWS = 20
MAX_REPORTED = 25  # violations listed in full; the rest are counted
assert tuple(BOUNDS) == FEATURES, "validation.BOUNDS out of step with data.FEATURES"


class DataValidationError(SystemExit):
    """Bad training data. A SystemExit, so the training command exits 1 with the report, no traceback."""

    def __init__(self, report: str, failures: pd.DataFrame) -> None:
        super().__init__(report)
        self.report, self.failures = report, failures


def schema(sensitive_column: str | None = SENSITIVE_COLUMN) -> pa.DataFrameSchema:
    columns = {
        name: pa.Column(dtype, pa.Check.in_range(lo, hi), nullable=False, coerce=True)
        for name, (dtype, lo, hi) in BOUNDS.items()
    }
    columns[TARGET] = pa.Column(int, pa.Check.isin([0, 1]), nullable=False, coerce=True)
    if sensitive_column:
        # The fairness gate groups by this column: every row needs a group.
        columns[sensitive_column] = pa.Column(str, pa.Check.str_length(1, 64), nullable=False)
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(lambda df: len(df) >= MIN_ROWS, error=f"at least {MIN_ROWS} rows"),
            pa.Check(lambda df: df[TARGET].nunique() == 2, error=f"both classes of {TARGET}"),
        ],
        strict=False,  # extra columns (ids, timestamps) are allowed and ignored
    )


def _report(path: Path, failures: pd.DataFrame) -> str:
    lines = [f"{path}: {len(failures)} data problem(s); training stopped before fitting:"]
    for row in failures.head(MAX_REPORTED).itertuples(index=False):
        where = (
            f"row {int(row.index) + 2}" if pd.notna(row.index) else "table"
        )  # +2: header, 1-based
        column = row.column if isinstance(row.column, str) else "-"
        lines.append(f"  - {where}, column {column}: {row.check} (got {row.failure_case!r})")
    if len(failures) > MAX_REPORTED:
        lines.append(f"  ... and {len(failures) - MAX_REPORTED} more")
    return "\n".join(lines)


def validate_frame(
    frame: pd.DataFrame, path: Path, sensitive_column: str | None = SENSITIVE_COLUMN
) -> pd.DataFrame:
    """Return the frame with coerced types, or raise DataValidationError listing every problem."""
    try:
        return schema(sensitive_column).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataValidationError(_report(path, exc.failure_cases), exc.failure_cases) from None


def validate_training_data(
    path: str | Path | None = None, sensitive_column: str | None = None
) -> pd.DataFrame:
    """Validate the training CSV (the bundled sample when path is None) before anything is fitted.

    The sensitive column is required when the fairness gate uses one (``gates.Thresholds``).
    """
    from .gates import Thresholds

    column = sensitive_column if sensitive_column is not None else Thresholds.from_env().sensitive
    source, text = read_training_text(path)
    # Read everything as text: the schema, not pandas' guessing, decides what a valid value is.
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    return validate_frame(frame, source, column or None)


def read_training_text(path: str | Path | None) -> tuple[Path, str]:
    """(a name for reports, the CSV text) of a local path, ``s3://bucket/key`` or the sample."""
    if isinstance(path, str) and path.startswith("s3://"):
        from .storage import client, read_s3_uri  # boto3 only when data lives in S3

        return Path(path.removeprefix("s3://")), read_s3_uri(client(), path).decode("utf-8")
    source = Path(path or sample_path())
    return source, source.read_text(encoding="utf-8")
