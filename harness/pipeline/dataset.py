"""Deterministic synthetic "recommendation" data for the pipeline under test.

The seed pipeline reads a parquet file with numeric features and an int ``label`` column.
We have no real data, so we generate it: a user/item interaction table where the label
("did the user engage with the recommended item") follows a noisy but learnable rule.
The noise is deliberate: the quality gate's thresholds (0.80 absolute, -0.02 regression)
only mean something if the model is good but not perfect, so a GradientBoostingClassifier
lands at cv f1_weighted around 0.9, never 1.0.

Only numpy + pandas are needed (pyarrow for ``write_dataset``) so this module imports in
every role environment: the harness, the pipeline role (kfp 2.9.0 + mlflow) and the
serving role, which all need the same rows.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where a frame is made: pandas takes 0.4 s, and the plugin loads this module
    import pandas as pd

__all__ = ["FEATURES", "LABEL", "frame_digest", "holdout_labels", "holdout_rows", "make_dataset", "write_dataset"]

# Column order is part of the contract: the MLflow signature inferred in train_model records
# these names in this order, and KServe v2 / MLServer requests are built from them.
FEATURES = [
    "user_age",
    "user_tenure_days",
    "user_sessions_30d",
    "user_avg_basket",
    "item_price",
    "item_rating",
    "item_popularity",
    "item_discount_pct",
    "user_item_affinity",
    "hour_of_day",
    "days_since_last_purchase",
    "category_match",
]
LABEL = "label"

# Separate, fixed sub-streams of one seed: training rows and hold-out rows never coincide,
# and asking for more hold-out rows does not change the training rows (or the reverse).
_TRAIN_STREAM = 0
_HOLDOUT_STREAM = 1
# The hold-out rows' label noise: a stream of its own, so labelling them leaves their features (and
# every earlier use of holdout_rows) exactly as they were.
_HOLDOUT_LABEL_STREAM = 2
# Scale of the logistic noise on the latent score (whose spread is about 1.6). Larger = harder.
# At 0.2 a 50-tree depth-3 GBM reaches cv f1_weighted of about 0.88 (seeds 7 and 11), i.e.
# comfortably over the 0.80 gate and far from 1.0; classes are balanced (about 50 % positive).
_NOISE = 0.2


def _features(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Draws plausible, correlated feature columns (all float64)."""
    age = rng.uniform(18, 70, rows)
    tenure = rng.gamma(2.0, 200.0, rows)
    sessions = rng.poisson(3 + tenure / 150.0).astype(np.float64)
    basket = rng.lognormal(3.5, 0.5, rows)
    price = rng.lognormal(3.3, 0.7, rows)
    rating = np.clip(rng.normal(3.8, 0.7, rows), 1.0, 5.0)
    popularity = rng.beta(2.0, 5.0, rows)
    discount = rng.choice([0.0, 5.0, 10.0, 20.0, 40.0], size=rows, p=[0.5, 0.15, 0.15, 0.12, 0.08])
    affinity = np.clip(rng.normal(0.0, 0.45, rows), -1.0, 1.0)
    hour = rng.integers(0, 24, rows).astype(np.float64)
    since_last = rng.exponential(20.0, rows)
    category_match = (rng.random(rows) < 0.35).astype(np.float64)
    import pandas as pd

    frame = pd.DataFrame(
        {
            "user_age": age,
            "user_tenure_days": tenure,
            "user_sessions_30d": sessions,
            "user_avg_basket": basket,
            "item_price": price,
            "item_rating": rating,
            "item_popularity": popularity,
            "item_discount_pct": discount,
            "user_item_affinity": affinity,
            "hour_of_day": hour,
            "days_since_last_purchase": since_last,
            "category_match": category_match,
        },
        columns=FEATURES,
    )
    return frame.astype(np.float64)


def _latent_score(f: pd.DataFrame) -> np.ndarray:
    """The hidden rule: mostly monotone terms plus a few thresholds and one interaction, so a
    tree ensemble needs many splits to approximate it (and stays below the Bayes limit)."""
    price_vs_basket = np.log(f["item_price"]) - np.log(f["user_avg_basket"])
    evening = ((f["hour_of_day"] >= 18) | (f["hour_of_day"] <= 1)).astype(np.float64)
    return (
        2.2 * f["user_item_affinity"]
        + 1.1 * f["category_match"]
        + 0.9 * (f["item_rating"] - 3.8)
        - 0.9 * price_vs_basket
        + 1.6 * f["item_popularity"]
        + 0.035 * f["item_discount_pct"]
        + 0.18 * np.log1p(f["user_sessions_30d"])
        - 0.6 * (f["days_since_last_purchase"] > 45).astype(np.float64)
        + 0.4 * evening * f["category_match"]
        - 0.012 * np.abs(f["user_age"] - 35.0)
        - 1.4  # centres the score so the classes are balanced
    ).to_numpy()


def make_dataset(rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Training rows: FEATURES (float64) + LABEL (int64, 0/1), deterministic in (rows, seed)."""
    rng = np.random.default_rng([seed, _TRAIN_STREAM])
    frame = _features(rng, rows)
    noise = rng.logistic(0.0, _NOISE, rows)
    frame[LABEL] = (_latent_score(frame) + noise > 0).astype(np.int64)
    return frame


def write_dataset(path: str, rows: int = 2000, seed: int = 7) -> str:
    """Writes make_dataset(rows, seed) to ``path`` as parquet (no index); returns the path."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    make_dataset(rows, seed).to_parquet(path, index=False)
    return path


def holdout_rows(n: int = 20, seed: int = 7) -> pd.DataFrame:
    """``n`` rows from a stream disjoint from the training rows, features only (no label):
    what a client would send to the served model."""
    rng = np.random.default_rng([seed, _HOLDOUT_STREAM])
    return _features(rng, n)


def holdout_labels(n: int = 20, seed: int = 7) -> pd.Series:
    """The true labels of ``holdout_rows(n, seed)``, row for row: the same hidden rule and noise
    scale as the training labels, the noise from a stream of its own. What the canary's
    correctness probes score each revision's answers against (int64, named LABEL)."""
    frame = holdout_rows(n, seed)
    noise = np.random.default_rng([seed, _HOLDOUT_LABEL_STREAM]).logistic(0.0, _NOISE, n)
    import pandas as pd

    return pd.Series((_latent_score(frame) + noise > 0).astype(np.int64), index=frame.index, name=LABEL)


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of a frame (values + column names + dtypes), independent of parquet
    bytes, which embed library versions and so differ between role environments."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr([(c, str(frame[c].dtype)) for c in frame.columns]).encode())
    h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()
