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


@pytest.fixture(scope="session")
def tiny():
    from probegen.models import ModelSpec, load_model

    return load_model(ModelSpec.from_values("tiny", device="cpu"))
