"""KD-Loss against values worked out by hand (METHOD.md §1): G = 0, Tough teacher 0.04 away, Tolerant 0.06 away."""
import edgekd  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from edgekd.models.losses import KDLossConfig, assistive_loss, kd_loss, l2_loss, main_loss

CODE = KDLossConfig()
FIG = KDLossConfig.paper_figure()


def t(*values):
    return tf.constant([list(values)], tf.float32)


def aloss(p, teacher, cfg=CODE, g=0.0):
    return float(assistive_loss(t(g), t(p), t(teacher), cfg.c, cfg.tough_pos, cfg.tough_neg, cfg.ramp))


def test_constants_are_the_code_version_and_the_figure_variant():
    assert (CODE.c, CODE.tough_pos, CODE.tough_neg, CODE.tol_pos, CODE.tol_neg) == (0.15, 1.9, -0.45, 1.8, -0.4)
    assert (CODE.main_slope, CODE.w_main, CODE.w_tough, CODE.w_tol, CODE.ramp) == (3.0, 2.0, 1.0, 1.0, False)
    assert (FIG.c, FIG.tough_pos, FIG.tough_neg, FIG.ramp) == (0.4, 1.0, -0.5, True)


def test_aloss_positive_region_pulls_with_alpha_pos():
    # e = 0.1 > d = 0.04: T' = 0.04, |T' - P| = 0.06, omega = 1.9
    assert aloss(0.1, 0.04) == pytest.approx(1.9 * 0.06)


def test_aloss_negative_region_between_beta_and_teacher():
    # beta = 0.15 * 0.04 = 0.006 <= e = 0.02 <= 0.04: omega = -0.45, |T' - P| = 0.02
    assert aloss(0.02, 0.04) == pytest.approx(-0.45 * 0.02)
    # the edges belong to R_N: e = beta and e = d
    assert aloss(0.04, 0.04) == pytest.approx(0.0)
    assert aloss(0.25, 1.0) == pytest.approx(-0.45 * 0.75)  # e = 0.25 > beta = 0.15, T' - P = 0.75


def test_aloss_low_influence_region_is_zero_in_code_version():
    assert aloss(0.003, 0.04) == 0.0  # e = 0.003 < beta = 0.006


def test_aloss_ramp_in_figure_version():
    # c = 0.4: beta = 0.016; e = 0.008 -> omega = -0.5 * 0.008 / 0.016 = -0.25; |T' - P| = 0.032
    assert aloss(0.008, 0.04, FIG) == pytest.approx(-0.25 * 0.032)
    assert aloss(0.1, 0.04, FIG) == pytest.approx(1.0 * 0.06)  # R_P with omega 1


def test_aloss_mirrors_teacher_onto_student_side_and_is_symmetric():
    # only the teacher's distance from G matters, never its side; P and its mirror image about G cost the same
    ref = aloss(0.1, 0.04)
    assert aloss(0.1, -0.04) == pytest.approx(ref, abs=1e-6)
    assert aloss(-0.1, 0.04) == pytest.approx(ref, abs=1e-6)
    assert aloss(0.6, 0.54, g=0.5) == pytest.approx(aloss(0.4, 0.46, g=0.5), abs=1e-6) == pytest.approx(ref, abs=1e-6)


def test_main_loss_branches():
    s = t(0.06)
    assert float(main_loss(t(0.0), t(0.03), s)) == pytest.approx(3 * 0.03)  # inside |G - S|: 3e
    assert float(main_loss(t(0.0), t(0.1), s)) == pytest.approx(0.01 + 0.18 - 0.0036)  # outside: e^2 + 3d - d^2
    assert float(main_loss(t(0.0), t(-0.1), s)) == pytest.approx(0.01 + 0.18 - 0.0036)
    inner = float(main_loss(t(0.0), t(0.06 - 1e-6), s))
    outer = float(main_loss(t(0.0), t(0.06 + 1e-6), s))
    assert inner == pytest.approx(outer, abs=1e-5)  # continuous at e = d_S
    assert float(main_loss(t(0.0), t(0.1), s, slope=1.0)) == pytest.approx(0.01 + 0.06 - 0.0036)


def test_kd_loss_total_and_components_on_a_tiny_batch():
    G, P, A, S = t(0.0, 0.0), t(0.1, 0.02), t(0.04, -0.04), t(-0.06, 0.06)
    total, parts = kd_loss(G, P, A, S, CODE)
    main = (0.1864 + 3 * 0.02) / 2
    tough = (1.9 * 0.06 + -0.45 * 0.02) / 2
    tol = (1.8 * 0.04 + -0.4 * 0.04) / 2
    assert float(parts["main"]) == pytest.approx(main)
    assert float(parts["aloss_tough"]) == pytest.approx(tough)
    assert float(parts["aloss_tol"]) == pytest.approx(tol)
    assert float(total) == pytest.approx(2 * main + tough + tol)


def test_kd_loss_with_a_plain_main_term_differs_from_that_loss_by_the_assistive_terms_only():
    from dataclasses import replace

    from edgekd.core.errors import EdgekdError
    from edgekd.models.losses import KDLossConfig

    G, P, A, S = t(0.0, 0.0), t(0.1, 0.02), t(0.04, -0.04), t(-0.06, 0.06)
    total, parts = kd_loss(G, P, A, S, replace(CODE, main="l1"))
    assert float(parts["main"]) == pytest.approx((0.1 + 0.02) / 2)  # L1 against G, the Tolerant threshold unused
    assert float(total) == pytest.approx(2 * (0.1 + 0.02) / 2 + float(parts["aloss_tough"]) + float(parts["aloss_tol"]))
    _, default = kd_loss(G, P, A, S, CODE)
    assert float(parts["aloss_tough"]) == pytest.approx(float(default["aloss_tough"]))
    with pytest.raises(EdgekdError, match="--kd-main"):
        KDLossConfig(main="l3")


def test_teacher_blend_moves_the_main_target_toward_the_tough_teacher_only():
    from dataclasses import replace

    from edgekd.core.errors import EdgekdError

    G, P, A, S = t(0.0, 0.0), t(0.1, 0.02), t(0.04, -0.04), t(-0.06, 0.06)
    _, plain = kd_loss(G, P, A, S, replace(CODE, main="l1"))
    _, half = kd_loss(G, P, A, S, replace(CODE, main="l1", teacher_blend=0.5))
    _, full = kd_loss(G, P, A, S, replace(CODE, main="l1", teacher_blend=1.0))
    assert float(half["main"]) == pytest.approx((abs(0.1 - 0.02) + abs(0.02 + 0.02)) / 2)  # target (0.02, -0.02)
    assert float(full["main"]) == pytest.approx((abs(0.1 - 0.04) + abs(0.02 + 0.04)) / 2)  # target = A
    assert float(plain["main"]) == pytest.approx((0.1 + 0.02) / 2)
    for k in ("aloss_tough", "aloss_tol"):  # the assistive terms still measure the teachers against G
        assert float(half[k]) == pytest.approx(float(plain[k]))
    from edgekd.training.config import TrainConfig

    with pytest.raises(EdgekdError, match="--kd-teacher-blend: needs a plain main term"):
        TrainConfig(stage="student", kd=KDLossConfig(teacher_blend=0.5)).validate()
    TrainConfig(stage="baseline", kd=KDLossConfig(teacher_blend=0.5)).validate()  # the baseline blends its --loss
    # `train --stage all` hands the teacher stages the student's settings: they ignore them
    TrainConfig(stage="tough", teacher_flip=True, kd=KDLossConfig(main="l1", teacher_blend=0.5)).validate()
    with pytest.raises(ValueError, match="teacher_blend needs a plain main term"):
        kd_loss(G, P, A, S, replace(CODE, teacher_blend=0.5))
    with pytest.raises(EdgekdError, match=r"--kd-teacher-blend 1.5: expected a number in \[0, 1\]"):
        KDLossConfig(main="l1", teacher_blend=1.5)


def test_kd_loss_is_zero_at_ground_truth_and_grows_outward():
    ps = np.linspace(0.0, 0.2, 41, dtype=np.float32)
    values = [float(kd_loss(t(0.0), t(p), t(0.04), t(0.06))[0]) for p in ps]
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values[8:], values[9:]))  # increasing beyond the teachers' boundary points
    assert values[-1] > max(values[:-1])


def test_gradient_reaches_only_the_student():
    G, P, A, S = (tf.Variable(v) for v in (t(0.0, 0.0), t(0.1, 0.02), t(0.04, 0.04), t(0.06, 0.06)))
    with tf.GradientTape(persistent=True) as tape:
        total, _ = kd_loss(G, P, A, S)
    grads = tape.gradient(total, [P, A, S, G])
    assert grads[1] is None and grads[2] is None and grads[3] is None
    gp = grads[0].numpy()[0]
    # coordinate 0 (e = 0.1, beyond both): d/dP [2*(2e) + 1.9 + 1.8] / 2 ; coordinate 1 (e = 0.02): 2*3 + 0.45 + 0.4
    assert gp[0] == pytest.approx((2 * 2 * 0.1 + 1.9 + 1.8) / 2)
    assert gp[1] == pytest.approx((2 * 3 + 0.45 + 0.4) / 2)
    assert np.all(gp > 0)  # gradient descent moves the student toward G in R_P and R_N alike


def test_l2_loss_is_mean_square_and_ignores_target_gradient():
    y, p = tf.Variable(t(0.0, 1.0)), tf.Variable(t(0.5, 0.0))
    with tf.GradientTape() as tape:
        loss = l2_loss(y, p)
    assert float(loss) == pytest.approx((0.25 + 1.0) / 2)
    assert tape.gradient(loss, y) is None
