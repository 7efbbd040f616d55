{% if cookiecutter.framework == 'pytorch' -%}
"""The model: a small PyTorch MLP behind the same interface as the scikit-learn variant.

Training runs on CUDA when a GPU is visible (the platform schedules the training job on the GPU
pool for the chosen accelerator), otherwise on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FRAMEWORK = "pytorch"
ARTIFACT = "model.pt"
DEFAULT_PARAMS: dict[str, Any] = {"hidden": 16, "epochs": 300, "lr": 0.05, "weight_decay": 1e-4}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Net(nn.Module):
    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


@dataclass
class TorchModel:
    params: dict[str, Any]
    n_features: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))
    net: _Net | None = None
    trained_on: str = "cpu"


def build(params: dict[str, Any] | None = None) -> TorchModel:
    return TorchModel(params={**DEFAULT_PARAMS, **(params or {})})


def fit(model: TorchModel, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> TorchModel:
    torch.manual_seed(seed)
    dev = device()
    model.n_features = X.shape[1]
    model.mean, model.std = X.mean(axis=0), X.std(axis=0) + 1e-8
    net = _Net(model.n_features, int(model.params["hidden"])).to(dev)
    xt = torch.tensor((X - model.mean) / model.std, dtype=torch.float32, device=dev)
    yt = torch.tensor(y, dtype=torch.float32, device=dev)
    opt = torch.optim.Adam(
        net.parameters(),
        lr=float(model.params["lr"]),
        weight_decay=float(model.params["weight_decay"]),
    )
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(int(model.params["epochs"])):
        opt.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
    model.net = net.eval().to("cpu")
    model.trained_on = dev
    return model


def predict_proba(model: TorchModel, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row."""
    if model.net is None:
        raise RuntimeError("model is not trained")
    xt = torch.tensor((X - model.mean) / model.std, dtype=torch.float32)
    with torch.no_grad():
        return torch.sigmoid(model.net(xt)).numpy().astype(np.float64)


def save(model: TorchModel, directory: Path) -> Path:
    if model.net is None:
        raise RuntimeError("model is not trained")
    path = directory / ARTIFACT
    torch.save(
        {
            "state_dict": model.net.state_dict(),
            "mean": torch.tensor(model.mean),
            "std": torch.tensor(model.std),
            "n_features": model.n_features,
            "hidden": int(model.params["hidden"]),
        },
        path,
    )
    return path


def load(directory: Path, params: dict[str, Any] | None = None) -> TorchModel:
    # weights_only: the checkpoint holds tensors and numbers only, so no pickled code runs.
    blob = torch.load(directory / ARTIFACT, map_location="cpu", weights_only=True)
    model = build({**(params or {}), "hidden": blob["hidden"]})
    model.n_features = int(blob["n_features"])
    model.mean, model.std = blob["mean"].numpy(), blob["std"].numpy()
    model.net = _Net(model.n_features, model.params["hidden"])
    model.net.load_state_dict(blob["state_dict"])
    model.net.eval()
    return model


def log_to_mlflow(mlflow: Any, model: TorchModel, registered_name: str | None) -> None:
    mlflow.pytorch.log_model(model.net, "model", registered_model_name=registered_name)
{%- else -%}
"""The model: a scikit-learn pipeline (standardise, then logistic regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
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


def predict_proba(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row."""
    return model.predict_proba(X)[:, 1]


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
