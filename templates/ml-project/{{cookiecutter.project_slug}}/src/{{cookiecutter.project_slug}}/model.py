{% if cookiecutter.framework == 'pytorch' -%}
"""The model: a small PyTorch MLP behind the same interface as the scikit-learn variant.

Training reads mini-batches through a ``DataLoader`` and a ``DistributedSampler``, so the same
code runs as one process (``python -m {{ cookiecutter.project_slug }}.train``) or as one of N under torchrun on
1 to N nodes (DDP: see ``distributed``). With ``CHECKPOINT_URI`` set (the platform sets it for
each training job) a checkpoint is written after every ``checkpoint_every`` epochs and a restarted
run resumes from it: with the same seed, the final weights equal those of an uninterrupted run.
Training runs on CUDA when a GPU is visible, otherwise on CPU.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from . import distributed
from .checkpoint import CheckpointStore

FRAMEWORK = "pytorch"
ARTIFACT = "model.pt"
DEFAULT_PARAMS: dict[str, Any] = {
    "hidden": 16,
    # On the bundled sample these held-out scores match the scikit-learn variant's within about a
    # point (mean accuracy over split seeds 0-5: 0.715 vs 0.728); more epochs overfit 300 rows.
    "epochs": 20,
    # The global batch: each of N processes takes batch_size / N rows per step.
    "batch_size": 32,
    "lr": 0.005,
    "weight_decay": 1e-4,
    "checkpoint_every": 1,
    # DataLoader worker processes (they need /dev/shm: the TrainingJob's shmSize).
    "num_workers": 0,
}


def device() -> str:
    return distributed.context().device.type


class _Net(nn.Module):
    """Raw features in, logit out: the standardisation travels with the weights."""

    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.layers = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std).squeeze(-1)


class _Probability(nn.Module):
    """What MLflow logs: raw features in, probability of the positive class out."""

    def __init__(self, net: _Net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


@dataclass
class TorchModel:
    params: dict[str, Any]
    n_features: int = 0
    net: _Net | None = None
    trained_on: str = "cpu"
    # Epoch the run resumed from (0: a fresh start).
    resumed_from: int = 0


def build(params: dict[str, Any] | None = None) -> TorchModel:
    return TorchModel(params={**DEFAULT_PARAMS, **(params or {})})


def fingerprint(params: dict[str, Any], seed: int, X: np.ndarray, y: np.ndarray) -> str:
    """What a checkpoint must have been written for: the same parameters, seed and data."""
    blob = json.dumps({"params": params, "seed": seed}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode())
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _resume(
    store: CheckpointStore | None, net: _Net, opt: torch.optim.Optimizer, expected: str
) -> int:
    state = store.load() if store else None
    if state is None:
        return 0
    if state["fingerprint"] != expected:
        raise ValueError(
            f"the checkpoint at {store} was written for other parameters or data; "
            "use a new CHECKPOINT_URI (one per run) or delete the old checkpoint"
        )
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def fit(model: TorchModel, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> TorchModel:
    ctx = distributed.setup()
    p = model.params
    epochs, every = int(p["epochs"]), max(int(p["checkpoint_every"]), 1)
    torch.manual_seed(seed)
    model.n_features = X.shape[1]
    net = _Net(model.n_features, int(p["hidden"]))
    net.mean.copy_(torch.tensor(X.mean(axis=0), dtype=torch.float32))
    net.std.copy_(torch.tensor(X.std(axis=0) + 1e-8, dtype=torch.float32))
    net.to(ctx.device)
    opt = torch.optim.Adam(
        net.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"])
    )
    store = CheckpointStore.from_env()
    fprint = fingerprint(p, seed, X, y)
    start = _resume(store, net, opt, fprint)
    if start and ctx.primary:
        print(f"resuming from epoch {start} of {epochs} ({store})", file=sys.stderr)
    # Every rank starts from the same weights: the same seed, or the same checkpoint.
    ddp: nn.Module = net
    if ctx.world_size > 1:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        ddp = DistributedDataParallel(net, device_ids=ids)
    dataset = TensorDataset(
        torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    )
    # The sampler's order depends only on (seed, epoch): a resumed run sees the same batches.
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
    )
    loader = DataLoader(
        dataset,
        batch_size=max(int(p["batch_size"]) // ctx.world_size, 1),
        sampler=sampler,
        num_workers=int(p["num_workers"]),
        pin_memory=ctx.device.type == "cuda",
    )
    loss_fn = nn.BCEWithLogitsLoss()
    ddp.train()
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(ddp(xb.to(ctx.device)), yb.to(ctx.device))
            loss.backward()
            opt.step()
            done = epoch + 1
        if store and ctx.primary and (done % every == 0 or done == epochs):
            store.save(
                {
                    "epoch": done,
                    "fingerprint": fprint,
                    "net": net.state_dict(),
                    "optimizer": opt.state_dict(),
                }
            )
    model.net = net.eval().to("cpu")
    model.trained_on = ctx.device.type
    model.resumed_from = start
    return model


def stop_unless_primary() -> None:
    """Ranks > 0 of a torchrun job stop after training; rank 0 evaluates, saves and uploads."""
    distributed.stop_unless_primary()


def predict_proba(model: TorchModel, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row."""
    if model.net is None:
        raise RuntimeError("model is not trained")
    with torch.no_grad():
        logits = model.net(torch.tensor(X, dtype=torch.float32))
        return torch.sigmoid(logits).numpy().astype(np.float64)


def predictor(model: TorchModel, probe: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_proba`` bound to the model, as the server calls it (same as scikit-learn's)."""
    del probe
    return partial(predict_proba, model)


def save(model: TorchModel, directory: Path) -> Path:
    if model.net is None:
        raise RuntimeError("model is not trained")
    path = directory / ARTIFACT
    torch.save(
        {
            "state_dict": model.net.state_dict(),
            "n_features": model.n_features,
            "hidden": int(model.params["hidden"]),
        },
        path,
    )
    return path


def load(directory: Path, params: dict[str, Any] | None = None) -> TorchModel:
    # weights_only: the file holds tensors and numbers only, so no pickled code runs.
    blob = torch.load(directory / ARTIFACT, map_location="cpu", weights_only=True)
    model = build({**(params or {}), "hidden": blob["hidden"]})
    model.n_features = int(blob["n_features"])
    model.net = _Net(model.n_features, model.params["hidden"])
    model.net.load_state_dict(blob["state_dict"])
    model.net.eval()
    return model


def log_to_mlflow(mlflow: Any, model: TorchModel, registered_name: str | None) -> None:
    """Log a module that maps raw features to probabilities; MLflow infers its signature from
    the input example, and ``mlflow.pytorch.load_model`` gives the module back."""
    if model.net is None:
        raise RuntimeError("model is not trained")
    mlflow.pytorch.log_model(
        _Probability(model.net).eval(),
        "model",
        registered_model_name=registered_name,
        input_example=np.zeros((2, model.n_features), dtype=np.float32),
    )
{%- else -%}
"""The model: a scikit-learn pipeline (standardise, then logistic regression)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy.special import expit  # scikit-learn's own dependency, and its logistic
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

FRAMEWORK = "sklearn"
ARTIFACT = "model.joblib"
DEFAULT_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 500}


def device() -> str:
    return "cpu"


def build(params: dict[str, Any] | None = None) -> Pipeline:
    p = {**DEFAULT_PARAMS, **(params or {})}
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]))),
        ]
    )


def fit(model: Pipeline, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Pipeline:
    model.set_params(clf__random_state=seed)
    return model.fit(X, y)


def stop_unless_primary() -> None:
    """Training is one process: nothing to stop (the PyTorch variant's torchrun ranks stop here)."""


def predict_proba(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row."""
    return model.predict_proba(X)[:, 1]


def predictor(model: Pipeline, probe: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_proba`` for a server whose inputs are already validated (finite, right width).

    For one row, scikit-learn spends over half its time checking its input again (dtype,
    dataframe detection, feature counts). The pipeline ``build`` makes is an affine map and a
    logistic, so this evaluates it from the fitted parameters (public attributes) with the same
    operations in the same order (``StandardScaler.transform``, ``decision_function``, scipy's
    ``expit``). It is used only if it agrees with ``predict_proba`` on ``probe`` rows; any other
    pipeline (or a disagreement) gets ``predict_proba`` itself.
    """
    if not _is_scaled_binary_logistic(model):
        return partial(predict_proba, model)
    scale, clf = model.named_steps["scale"], model.named_steps["clf"]
    mean = scale.mean_ if scale.with_mean else None
    std = scale.scale_ if scale.with_std else None
    coef, intercept = clf.coef_.T, clf.intercept_

    def fast(X: np.ndarray) -> np.ndarray:
        Z = np.array(X, dtype=np.float64)  # a copy: transform() works on one, too
        if mean is not None:
            Z -= mean
        if std is not None:
            Z /= std
        return expit((Z @ coef + intercept).ravel())

    if np.allclose(fast(probe), predict_proba(model, probe), rtol=0, atol=1e-12):
        return fast
    return partial(predict_proba, model)


def _is_scaled_binary_logistic(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    return (
        isinstance(model, Pipeline)
        and [name for name, _ in steps] == ["scale", "clf"]
        and type(steps[0][1]) is StandardScaler
        and type(steps[1][1]) is LogisticRegression
        and len(getattr(steps[1][1], "classes_", ())) == 2
    )


def save(model: Pipeline, directory: Path) -> Path:
    path = directory / ARTIFACT
    joblib.dump(model, path)
    return path


def load(directory: Path, params: dict[str, Any] | None = None) -> Pipeline:
    # joblib unpickles: the registry checks the artifact's sha256 against its metadata first.
    del params
    return joblib.load(directory / ARTIFACT)


def log_to_mlflow(mlflow: Any, model: Pipeline, registered_name: str | None) -> None:
    mlflow.sklearn.log_model(model, "model", registered_model_name=registered_name)
{%- endif %}
