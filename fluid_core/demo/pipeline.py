"""Four pipeline stages written against a step context (``get``/``put`` by key).

The same functions run with the object cache (``StepContext``) and with files
(``FileContext``), so the two hand-overs are compared on identical work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SEGMENTS = ("retail", "online", "partner", "wholesale")
NUMERIC = 12
#: Bytes per generated row: 12 float64 columns, an int64 id, a category and a label.
ROW_BYTES = NUMERIC * 8 + 8 + 1 + 1


def generate(ctx: Any, rows: int | None = None) -> None:
    """A table of transactions: numeric columns, a segment, and a label to predict."""
    import pandas as pd  # noqa: PLC0415

    rows = rows or int(ctx.params.get("rows", 100_000))
    rng = np.random.default_rng(42)
    data: dict[str, np.ndarray[Any, Any]] = {f"x{i}": rng.standard_normal(rows) * (i + 1) + i for i in range(NUMERIC)}
    segment = rng.integers(0, len(SEGMENTS), rows).astype(np.int8)
    data["id"] = np.arange(rows, dtype=np.int64)
    frame = pd.DataFrame(data)
    frame["segment"] = pd.Categorical.from_codes(segment, categories=list(SEGMENTS))
    score = frame["x0"] * 0.8 - frame["x3"] * 0.25 + segment * 0.5 + rng.standard_normal(rows)
    frame["label"] = (score > score.median()).astype(np.int8)
    ctx.put("raw", frame)


def features(ctx: Any) -> None:
    """Standardised numeric columns and a one-hot segment as a float32 matrix."""
    frame = ctx.get("raw")
    numeric = frame[[f"x{i}" for i in range(NUMERIC)]].to_numpy(dtype=np.float32, copy=True)
    numeric -= numeric.mean(axis=0)
    numeric /= numeric.std(axis=0) + 1e-6
    codes = frame["segment"].cat.codes.to_numpy()
    onehot = np.zeros((len(frame), len(SEGMENTS)), dtype=np.float32)
    onehot[np.arange(len(frame)), codes] = 1.0
    ctx.put("features", np.ascontiguousarray(np.hstack([numeric, onehot])))
    ctx.put("labels", frame["label"].to_numpy(dtype=np.float32))


def train(ctx: Any) -> None:
    """Logistic regression by full-batch gradient descent."""
    x, y = ctx.get("features"), ctx.get("labels")
    weights, bias, losses = np.zeros(x.shape[1], dtype=np.float32), 0.0, []
    for _ in range(int(ctx.params.get("epochs", 8))):
        p = 1.0 / (1.0 + np.exp(-(x @ weights + bias)))
        error = p - y
        weights -= 0.5 * (x.T @ error) / len(y)
        bias -= 0.5 * float(error.mean())
        losses.append(float(-np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7))))
    ctx.put("model", {"weights": weights, "bias": bias, "loss": losses})


def evaluate(ctx: Any) -> None:
    """Accuracy of the model on the features."""
    x, y, model = ctx.get("features"), ctx.get("labels"), ctx.get("model")
    predicted = (x @ model["weights"] + model["bias"]) > 0
    ctx.put("metrics", {"accuracy": float((predicted == (y > 0.5)).mean()), "rows": int(len(y)),
                        "final_loss": model["loss"][-1]})
