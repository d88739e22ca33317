"""Parameter counts and multiply-adds match the published figures (edgecv.models.published)."""
from __future__ import annotations

import pytest

from edgecv.models import get_spec, model_info
from edgecv.models.published import PUBLISHED, parse, within


def _id(p):
    return f"{p.name}{'@' + str(p.input_hw) if p.input_hw else ''}{'+' + ','.join(p.kwargs) if p.kwargs else ''}"


@pytest.mark.parametrize("pub", PUBLISHED, ids=[_id(p) for p in PUBLISHED])
def test_counts_match_published(pub):
    spec = get_spec(pub.name)
    size = (spec.input_size[0], pub.input_hw, pub.input_hw) if pub.input_hw else None
    info = model_info(pub.name, input_size=size, **pub.kwargs)
    if pub.params:
        assert within(info["params"], pub.params), f"params {info['params']:,} vs {pub.params} ({pub.source})"
    if pub.macs:
        assert within(info["macs"], pub.macs), f"MACs {info['macs']:,} vs {pub.macs} ({pub.source})"


def test_rounding_rule():
    assert parse("0.5M") == (0.5e6, 0.05e6)
    assert within(470_072, "0.5M") and not within(440_000, "0.5M")
    assert within(4_231_976, "4.2M") and not within(4_400_000, "4.2M")
    assert within(1_049_000, "1.0M") and not within(1_051_000, "1.0M")  # half a unit of the last digit
    assert within(137_000_000, "138M") and not within(135_000_000, "138M")  # 2% of 138M = 2.76M
