"""The default recipe's KD student with function matching on mixed images (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent"): a validation experiment, not an edgekd option.

The plain control can only learn from labelled faces, and on those the ground truth is exact; a teacher can also
label images that have none. Each student step here adds, beside the recipe's labelled batch (KD-Loss as the recipe
sets it), the same batch mixed with its reverse (lambda ~ U(0, 1) per image), where the student matches the Tough
teachers' mirror-averaged output with L1. It patches ``Distiller.train_step`` and runs `edgekd train` with the
arguments given, so a recipe run folder whose earlier stages are finished trains its student this way:

    .venv/bin/python benchmarks/recipe-choice/function_matching.py train PREPARED --recipe default \\
        --run-dir RUN --resume 'export.modes=[float32]'

(RUN holding the warmup, tough, tolerant, refine0 and refine1 stages of a default-recipe run). Two images per
labelled one, so a step costs about twice the student's; benchmarks/recipe-choice/function-matching.md has the result.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tensorflow as tf  # noqa: E402

from edgekd.models.losses import get_loss  # noqa: E402
from edgekd.training import trainers  # noqa: E402

L1 = get_loss("l1")


def train_step(self, data):
    """LandmarkTrainer.train_step with the mixed half added (its loss: L1 to the Tough teachers' output)."""
    images, targets = data
    n = tf.shape(images)[0]
    lam = tf.random.uniform(tf.stack([n, 1, 1, 1]))
    mixed = lam * images + (1.0 - lam) * tf.reverse(images, axis=[0])
    guidance = self.guidance(images, targets)
    matched = trainers.teach(self.tough, mixed, self.flip_permutation)
    with tf.GradientTape() as tape:
        both = self.net(tf.concat([images, mixed], 0), training=True)
        pred, pred_mixed = both[:n], both[n:]
        loss, parts = self.objective(targets, pred, guidance)
        loss = loss + L1(matched, pred_mixed)
        loss = loss + tf.add_n(self.net.losses) if self.net.losses else loss
        scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
    variables = self.net.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
    self.trackers["loss"].update_state(loss)
    self.trackers["nme"].update_state(trainers.tf_batch_nme(pred, targets["hard"], self.nme_pair))
    for k, v in parts.items():
        self.trackers[k].update_state(v)
    return {k: m.result() for k, m in self.trackers.items()}


if __name__ == "__main__":
    trainers.Distiller.train_step = train_step
    from edgekd.cli.main import main

    raise SystemExit(main())
