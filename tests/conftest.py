from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    env = os.environ.get("EDGECV_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared", Path.cwd().parent / "shared"]:
        if (cand / "data").is_dir():
            return cand
    return None


SHARED = _shared()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared data not found: set EDGECV_SHARED to the shared/ folder")


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED is None:
        pytest.skip("shared data not found: set EDGECV_SHARED to the shared/ folder")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
