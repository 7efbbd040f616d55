"""Data loading and the bundled synthetic churn dataset.

The sample dataset is generated with the standard library's seeded RNG, so
``generate(SAMPLE_ROWS, SAMPLE_SEED)`` reproduces ``sample_data/churn.csv`` byte for byte on any
platform. Replace ``load_dataset`` with your own source; keep ``FEATURES`` and ``TARGET`` in step
with the serving schema.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

FEATURES = ("tenure_months", "monthly_spend", "support_tickets", "usage_hours")
TARGET = "churned"
SAMPLE_ROWS = 400
SAMPLE_SEED = 20240611
# Not a model input: a sensitive attribute kept in the data for the fairness gate (fairness.py).
SENSITIVE_COLUMN = "age_band"
AGE_BANDS = ("18-34", "35-54", "55+")


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    sha256: str

    def __len__(self) -> int:
        return len(self.y)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: exact and dependency-free for the small rates used here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def generate(rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> str:
    """Return a synthetic churn dataset as CSV text (deterministic for a given seed)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    bands = random.Random(seed + 1)  # noqa: S311 - its own stream: the other columns stay as they were
    out = io.StringIO()
    out.write(",".join((*FEATURES, TARGET, SENSITIVE_COLUMN)) + "\n")
    for _ in range(rows):
        tenure = rng.randint(0, 72)
        spend = round(rng.uniform(10, 150), 2)
        tickets = min(_poisson(rng, 1.5), 12)
        usage = round(min(rng.gammavariate(2.0, 12.0), 200.0), 1)
        logit = -0.05 * tenure + 0.02 * spend + 0.55 * tickets - 0.04 * usage + 0.3
        churned = int(rng.random() < 1 / (1 + math.exp(-logit)))
        band = bands.choice(AGE_BANDS)
        out.write(f"{tenure},{spend:.2f},{tickets},{usage:.1f},{churned},{band}\n")
    return out.getvalue()


def sample_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("sample_data", "churn.csv")))


def parse_csv(text: str) -> Dataset:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in (*FEATURES, TARGET) if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"dataset is missing columns: {', '.join(missing)}")
    rows = list(reader)
    if not rows:
        raise ValueError("dataset has no rows")
    X = np.array([[float(r[f]) for f in FEATURES] for r in rows], dtype=np.float64)
    y = np.array([int(r[TARGET]) for r in rows], dtype=np.int64)
    if set(np.unique(y)) - {0, 1}:
        raise ValueError(f"{TARGET} must be 0 or 1")
    return Dataset(X=X, y=y, sha256=hashlib.sha256(text.encode()).hexdigest())


def load_dataset(path: str | Path | None = None) -> Dataset:
    """Load a CSV with the FEATURES and TARGET columns: a local path, ``s3://bucket/key`` (the
    platform's model bucket, under this project's prefix), or the bundled sample when None."""
    if isinstance(path, str) and path.startswith("s3://"):
        from .storage import client, read_s3_uri  # boto3 only when data lives in S3

        return parse_csv(read_s3_uri(client(), path).decode("utf-8"))
    return parse_csv(Path(path or sample_path()).read_text(encoding="utf-8"))


def train_test_split(
    data: Dataset, test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split, so both classes appear in both halves even on tiny data."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for label in np.unique(data.y):
        idx = np.flatnonzero(data.y == label)
        rng.shuffle(idx)
        test_idx.extend(idx[: max(1, round(len(idx) * test_fraction))].tolist())
    mask = np.zeros(len(data.y), dtype=bool)
    mask[test_idx] = True
    return data.X[~mask], data.X[mask], data.y[~mask], data.y[mask]
