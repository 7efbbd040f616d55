"""The PyTorch variant trains on a GPU when one is visible (run on a GPU node to check)."""

from pathlib import Path

import pytest
import torch

from {{ cookiecutter.project_slug }}.train import train


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_training_uses_cuda_when_available(tiny_csv: Path, tmp_path: Path) -> None:
    result = train(data_path=tiny_csv, model_dir=tmp_path)
    assert result.device == "cuda"
    assert result.metrics["accuracy"] > 0.6
