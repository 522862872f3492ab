"""Stage 3 is torch-free: its entry point, the model naming it shares with the other stages and
the W&B tracking load neither torch nor transformers, nor the model-loading code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A fresh interpreter: this one imported torch long ago. The entry point is loaded as a module
# (not run), which is when Hydra needs the `probegen.model_name` resolver to exist already.
CHECK = """
import importlib.util, json, sys
import matplotlib
before = dict(dict.items(matplotlib.rcParams))
import probegen.aggregate.run, probegen.model_spec, probegen.tracking, probegen.job_summary
spec = importlib.util.spec_from_file_location("aggregate_entry", "scripts/aggregate.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from omegaconf import OmegaConf
after = dict(dict.items(matplotlib.rcParams))
heavy = ["torch", "transformers", "probegen.models", "probegen.cache", "matplotlib.pyplot"]
print(json.dumps({
    "loaded": [m for m in heavy if m in sys.modules],
    "resolver": OmegaConf.has_resolver("probegen.model_name"),
    "rc_changed": sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)),
}))
"""


def test_stage_3_entry_point_imports_neither_torch_nor_transformers():
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen == {"loaded": [], "resolver": True, "rc_changed": []}
