from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    from edgecv.data.sources import shared_root

    root = shared_root(required=False)
    return root if root is not None and (root / "data").is_dir() else None


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
