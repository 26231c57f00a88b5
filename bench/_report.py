"""Shared plumbing of the issue-#12 benches: where MNIST lives, mean ± std, writing results.

Each bench writes ``bench/results/<name>.md`` (the table a person reads) and ``<name>.json``
beside it (every number, per seed, for plots and later comparison).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: The shared MNIST IDX files (``MNIST/raw/*-idx?-ubyte.gz``), next to the checkouts.
DATA = ROOT.parent / "shared" / "data"


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"m ± s"`` of ``values * scale`` (sample std, ddof = 1; just ``m`` for one value)."""
    v = np.asarray(values, dtype=np.float64) * scale
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def machine() -> dict:
    """What the numbers were measured on (load matters: the VM is shared)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "host_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def write_results(out: Path, markdown: str, payload: dict) -> None:
    """Write ``out`` (``.md``) and the JSON beside it; print where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.json')}")
