"""Losses: a registry of plain landmark losses (teachers, plain students) and KD-Loss for the student.

Plain losses are selected by name (``LOSSES``, ``get_loss``): adding one is a function plus one entry. ``l2`` is the
paper's; ``l1`` trains MobileNetV2 from scratch faster on 2 CPU cores (benchmarks/README.md, ablation); ``wing`` is
Feng et al. (CVPR 2018). KD-Loss follows the paper (defaults per the authors' code).

Notation per coordinate (x and y separately, all 2N values of every image): G ground truth, P student, A Tough
teacher, S Tolerant teacher; e = |P - G|, d_T = |T - G|. Every mean runs over the whole (batch x 2N) tensor.
Teacher outputs and G are wrapped in ``stop_gradient``: the gradient reaches the student only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekd.core.errors import EdgekdError, check_range
from edgekd.core.settings import option, setting

_POSITIVE = {"lo": 0, "lo_open": True}


@dataclass(frozen=True)
class KDLossConfig:
    """All constants of KD-Loss. Defaults = the authors' released code; ``paper_figure()`` = the paper's drawings."""

    c: float = setting(0.15, "KD-Loss: boundary beta_T = G + sign(P - G) x c x d_T between the low-influence and "
                             "negative regions.", range=_POSITIVE)
    tough_pos: float = setting(1.9, "KD-Loss: omega in R_P for the Tough teacher (student beyond the teacher): "
                                    "pulls P toward G.")
    tough_neg: float = setting(-0.45, "KD-Loss: omega in R_N for the Tough teacher (between beta and the "
                                      "teacher): pushes P away from the teacher, toward G.")
    tol_pos: float = setting(1.8, "KD-Loss: omega in R_P for the Tolerant teacher.")
    tol_neg: float = setting(-0.4, "KD-Loss: omega in R_N for the Tolerant teacher.")
    ramp: bool = setting(False, "KD-Loss: in R_L omega is 0 (the authors' code) or ramps linearly from 0 at G to "
                                "omega_neg at beta (the paper's figure).")
    main_slope: float = setting(3.0, "Loss_Main = slope x e inside |G - S|, e^2 + slope x d_S - d_S^2 outside "
                                     "(continuous).", range=_POSITIVE)
    w_main: float = setting(2.0, "KD-Loss: weight of the main term.", range=_POSITIVE)
    w_tough: float = setting(1.0, "KD-Loss: weight of the Tough teacher's assistive term.", range=_POSITIVE)
    w_tol: float = setting(1.0, "KD-Loss: weight of the Tolerant teacher's assistive term.", range=_POSITIVE)
    # LOSSES on G alone lets KD-Loss and a plain student trained with that loss differ by the assistive terms only
    main: str = setting("paper", "KD-Loss main term: paper = Loss_Main as published, or a plain loss against the "
                                 "ground truth.", choices=lambda: ("paper", *LOSSES), old=("--main-loss",))
    # distillation of the teacher's positions, as in Hinton et al. for regression; KD-Loss's assistive terms use only
    # how far each teacher is from G, never where it points: the blend is what passes on an ensemble's or a mirror
    # average's positions
    teacher_blend: float = setting(
        0.0, "KD student: the main term's target is (1 - b) x ground truth + b x the Tough teacher's output, 0 to 1 "
             "(needs --kd-main l1, l2 or wing); baseline: the same target for its --loss, with no assistive terms "
             "(distillation of the teacher's positions, e.g. of its flip average).",
        range={"lo": 0.0, "hi": 1.0}, old=("--teacher-blend",))

    def __post_init__(self):
        if self.main != "paper" and self.main not in LOSSES:
            raise EdgekdError(f"{option('kd.main')}: {self.main!r} is not one of paper, {', '.join(LOSSES)}")
        check_range(option("kd.teacher_blend"), self.teacher_blend, 0.0, 1.0)

    @classmethod
    def paper_figure(cls) -> "KDLossConfig":
        """Constants of the paper's figures: c 0.4, omega 1 / -0.5 for both teachers, ramp in R_L, L1 slope 1.

        Weights stay 2/1/1 (the figure script's 2.5 is drawing-only).
        """
        return cls(c=0.4, tough_pos=1.0, tough_neg=-0.5, tol_pos=1.0, tol_neg=-0.5, ramp=True, main_slope=1.0)

    def to_dict(self) -> dict:
        return asdict(self)


def l2_loss(target, pred):
    """Mean squared error over every coordinate of the batch (the teachers' loss in the paper)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(pred - tf.stop_gradient(target)))


def l1_loss(target, pred):
    """Mean absolute error over every coordinate of the batch: robust to the few badly annotated points."""
    import tensorflow as tf

    return tf.reduce_mean(tf.abs(pred - tf.stop_gradient(target)))


# Wing loss constants in normalised crop coordinates: Feng et al. use w=10, eps=2 on pixels of a 64-128 px crop
# (coordinates about 0-128); our coordinates span about 1 unit per crop side, so both are scaled by 1/128.
WING_W, WING_EPS = 10.0 / 128, 2.0 / 128


def wing_loss(target, pred, w: float = WING_W, eps: float = WING_EPS):
    """Wing loss (Feng et al., CVPR 2018): w*ln(1 + |x|/eps) below w, |x| - C above, C making it continuous.

    Amplifies small and medium errors compared with L1, which is what fine landmark accuracy needs.
    """
    import math

    import tensorflow as tf

    x = tf.abs(pred - tf.stop_gradient(target))
    c = w - w * math.log(1.0 + w / eps)
    return tf.reduce_mean(tf.where(x < w, w * tf.math.log1p(x / eps), x - c))


LOSSES = {"l2": l2_loss, "l1": l1_loss, "wing": wing_loss}


def get_loss(name: str):
    """A plain landmark loss ``fn(target, pred) -> scalar`` by its registry name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise EdgekdError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}") from None


def _omega(e, d, c: float, pos: float, neg: float, ramp: bool):
    """Per-coordinate weight of ALoss: pos in R_P (e > d), neg in R_N (c*d <= e <= d), 0 or a ramp in R_L."""
    import tensorflow as tf

    low = neg * tf.math.divide_no_nan(e, c * d) if ramp else tf.zeros_like(e)
    return tf.where(e > d, pos, tf.where(e >= c * d, neg, low))


def assistive_loss(G, P, T, c: float, pos: float, neg: float, ramp: bool = False):
    """ALoss_T = mean(omega * |T' - P|) with T' = G + sign(P - G) * |T - G| (the teacher mirrored onto P's side).

    omega is a constant weight per coordinate (no gradient flows through the region choice or the ramp).
    """
    import tensorflow as tf

    G, T = tf.stop_gradient(G), tf.stop_gradient(T)
    e = tf.abs(P - G)
    d = tf.abs(T - G)
    mirrored = G + tf.sign(P - G) * d
    omega = tf.stop_gradient(_omega(tf.stop_gradient(e), d, c, pos, neg, ramp))
    return tf.reduce_mean(omega * tf.abs(mirrored - P))


def main_loss(G, P, S, slope: float = 3.0):
    """slope*e where e <= d_S = |S - G|, else e^2 + slope*d_S - d_S^2 (continuous at e = d_S)."""
    import tensorflow as tf

    G, S = tf.stop_gradient(G), tf.stop_gradient(S)
    e = tf.abs(P - G)
    d = tf.abs(S - G)
    return tf.reduce_mean(tf.where(e <= d, slope * e, tf.square(e) + slope * d - tf.square(d)))


def kd_loss(G, P, A, S, cfg: KDLossConfig = KDLossConfig()):
    """KD-Loss = w_main*Loss_Main + w_tough*ALoss_A + w_tol*ALoss_S; returns (total, {component: value}).

    With ``cfg.main`` a plain loss name, Loss_Main is that loss against G, or against G blended with the Tough
    teacher's output (``cfg.teacher_blend``); the Tolerant teacher then guides through its assistive term only."""
    if cfg.main == "paper":
        if cfg.teacher_blend:
            raise ValueError("kd_loss: teacher_blend needs a plain main term; Loss_Main is defined around G alone")
        main = main_loss(G, P, S, cfg.main_slope)
    else:
        target = G if not cfg.teacher_blend else (1.0 - cfg.teacher_blend) * G + cfg.teacher_blend * A
        main = get_loss(cfg.main)(target, P)
    tough = assistive_loss(G, P, A, cfg.c, cfg.tough_pos, cfg.tough_neg, cfg.ramp)
    tol = assistive_loss(G, P, S, cfg.c, cfg.tol_pos, cfg.tol_neg, cfg.ramp)
    total = cfg.w_main * main + cfg.w_tough * tough + cfg.w_tol * tol
    return total, {"main": main, "aloss_tough": tough, "aloss_tol": tol}
