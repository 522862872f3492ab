"""Shared fixtures: offline hub, the tiny model, and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """Run under one torch thread and under two: the products of probes.base.matvecs and
    cache.project_rows go through numpy's BLAS in the first case and torch's in the second."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    from probegen.model_spec import ModelSpec
    from probegen.models import load_model

    return load_model(ModelSpec.from_values("tiny", device="cpu"))
