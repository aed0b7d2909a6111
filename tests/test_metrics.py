"""Metric code against values worked out by hand."""
import math

import numpy as np
import pytest

from edgekd.core import metrics as M
from edgekd.core.schemes import get_scheme

S300 = get_scheme("300w")


def _face(d=10.0):
    """68 points with the outer eye corners (36, 45) exactly d pixels apart."""
    pts = np.random.default_rng(0).uniform(20, 80, (68, 2)).astype(np.float32)
    pts[36] = (30.0, 40.0)
    pts[45] = (30.0 + d, 40.0)
    return pts


def test_nme_uses_outer_eye_corner_distance():
    gt = _face(d=10.0)
    assert M.nme(gt + np.float32([3.0, 4.0]), gt, S300) == pytest.approx(0.5)  # every point 5 px off, d = 10
    one_off = gt.copy()
    one_off[10] += (6.0, 8.0)  # a single point 10 px off: 10 / 68 / 10
    assert M.nme(one_off, gt, S300) == pytest.approx(1 / 68)
    assert M.nme(None, gt, S300) == math.inf


def test_nme_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        M.nme(np.zeros((98, 2)), _face(), S300)


def test_failure_rate_counts_misses_and_is_strict_at_threshold():
    assert M.failure_rate([0.05, 0.1, 0.2, math.inf]) == pytest.approx(0.5)


def test_standard_auc_of_known_ced():
    errors = [0.0, 0.05, 0.1, math.inf]
    # CED: 1/4 at 0, 2/4 from 0.05, 3/4 at 0.1 -> area = (0.25 * 0.05 + 0.5 * 0.05) / 0.1 = 0.375
    assert M.auc(errors) == pytest.approx(0.375)
    t, frac = M.ced(errors, steps=100001)  # the same area by integrating the sampled curve
    assert np.trapezoid(frac, t) / 0.1 == pytest.approx(0.375, abs=1e-4)
    assert M.auc([0.0, 0.0]) == pytest.approx(1.0)
    assert M.auc([0.2, math.inf]) == 0.0


def test_paper_auc_variant_matches_method_example():
    # METHOD.md §6: all faces at NME 0.0356 -> 0.855 (thresholds j * 0.1/19, first reached at j = 7)
    assert M.auc_paper([0.0356] * 5) == pytest.approx(0.1 / 19 * sum((2 * j - 1) / 2 for j in range(7, 20)))
    assert M.auc_paper([0.0356] * 5) == pytest.approx(0.855, abs=1e-3)
    assert M.auc_paper([0.0]) == pytest.approx(0.95)


def test_summary_mean_over_detected_faces_failures_counted():
    s = M.summarize([0.02, 0.04, math.inf, 0.2])
    assert s["count"] == 4 and s["detector_failures"] == 1
    assert s["nme"] == pytest.approx(100 * (0.02 + 0.04 + 0.2) / 3)
    assert s["fr"] == pytest.approx(50.0)  # 0.2 and the miss
    assert s["fr_detected"] == pytest.approx(100 / 3)
    assert s["auc"] == pytest.approx((0.8 + 0.6) / 4)


def test_subsets_follow_tags_and_full_is_not_a_mislabelled_copy():
    errors = [0.01, 0.03, 0.05]
    tags = [("common", "full"), ("common", "full"), ("challenging", "full")]
    out = M.summarize_subsets(errors, tags, S300)
    assert list(out) == ["common", "challenging", "full"]
    assert out["common"]["nme"] == pytest.approx(2.0)
    assert out["challenging"]["nme"] == pytest.approx(5.0)
    assert out["full"]["nme"] == pytest.approx(3.0)
    only_common = M.summarize_subsets(errors[:2], tags[:2], S300)
    assert list(only_common) == ["common"]  # 300-W without iBUG is not "full"
    wflw = M.summarize_subsets([0.1, 0.2], [("pose", "full"), ("full",)], get_scheme("wflw"))
    assert list(wflw) == ["pose", "full"] and wflw["full"]["count"] == 2
