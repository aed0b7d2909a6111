"""The training steps: module-level tf_keras ``Model`` subclasses with a custom ``train_step`` (keras.io style).

``LandmarkTrainer`` trains one network on one target with a plain loss chosen by name (losses.LOSSES);
``Mimic`` trains one network to reproduce a frozen reference network's outputs, or a blend of them with the ground
truth (QAT: the int8-simulated network and its own float twin; a plain student and a teacher's flip-averaged
outputs, ``--teacher-blend`` on the baseline stage); ``Distiller`` trains the student under KD-Loss with two
frozen teachers run in inference mode on the same augmented batch, or with their outputs computed once and carried
by the batch (teacher_targets.py). A teacher may be an ``Ensemble`` of frozen networks of any input size. All three
log the running loss and the training NME (vs the hard targets). QAT fine-tuning (qat.py) uses the same classes on
the tfmot-wrapped network.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from edgekd.core.crop import from_box, to_box
from edgekd.core.metrics import tf_batch_nme
from edgekd.models.losses import KDLossConfig, get_loss, kd_loss


def unflip(pred, flip_permutation, input_size: int):
    """Predictions (B, 2N) on mirrored crops -> predictions for the original crops (normalised coordinates).

    A pixel x maps to size-1-x; in normalised coordinates (x/size - 0.5) that is -x - 1/size. Points are then
    relabelled left <-> right with the scheme's flip permutation.
    """
    p = tf.reshape(pred, (tf.shape(pred)[0], -1, 2))
    p = tf.stack([-p[..., 0] - 1.0 / input_size, p[..., 1]], axis=-1)
    p = tf.gather(p, flip_permutation, axis=1)
    return tf.reshape(p, (tf.shape(pred)[0], -1))


class Ensemble(keras.Model):
    """Frozen networks that teach as one: the mean of their outputs, each run on the batch resized to its own input
    size and its output moved back to the batch's normalised coordinates.

    Why: averaging teachers that err differently is a better teacher than any of them (edgekd 0.9.0
    and 0.10.0: the 128 px student and its 160 px fine-tune, flip-averaged each, 3.905 % validation NME against
    3.991 and 3.997 % for each alone; the student that fitted it, 0.10.0's, gained 0.03), and a teacher
    trained at a larger input size still teaches a small student on the student's own augmented crops, upsampled.
    Resizing keeps the crop, so only the half-pixel offset of the normalised coordinates (core.crop.to_box)
    differs between sizes.
    """

    def __init__(self, members, input_size: int, **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ValueError("Ensemble: no members")
        for member in members:
            member.trainable = False
        self.members, self.input_size = list(members), int(input_size)

    def call(self, images, training=False):
        outs = []
        for member in self.members:
            size = member.input_shape[1] or self.input_size
            if size == self.input_size:
                outs.append(member(images, training=False))
                continue
            # downsizing is anti-aliased (only enlarging, 128 -> 160 px, was measured: benchmarks/README.md)
            resized = tf.image.resize(images, (size, size), antialias=size < self.input_size)
            out = member(resized, training=False)
            outs.append(from_box(to_box(out, size), self.input_size))
        return tf.add_n(outs) / len(outs)


def teach(teacher, images, flip_permutation=None):
    """A frozen network's output, without gradient; with a flip permutation, averaged with its output on the
    mirrored image (two passes: a teacher at its test-time flip average, which is better than one pass).

    The one flip average of training: online teachers and cached ones (teacher_targets.teacher_outputs) both take
    it; the runtime's Predictor averages the same way on image pixels, without TensorFlow."""
    out = teacher(images, training=False)
    if flip_permutation is not None:
        mirrored = teacher(tf.reverse(images, axis=[2]), training=False)
        out = 0.5 * (out + unflip(mirrored, flip_permutation, images.shape[2]))
    return tf.stop_gradient(out)


class LandmarkTrainer(keras.Model):
    """Trains ``net`` with a plain loss (by name) on one target ("hard" or "soft")."""

    components: tuple[str, ...] = ()

    def __init__(self, net, target: str, nme_pair, loss: str = "l2", **kwargs):
        super().__init__(**kwargs)
        self.net, self.target, self.nme_pair = net, target, tuple(nme_pair)
        self.loss_fn = get_loss(loss)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "nme", *self.components)}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.net(images, training=training)

    def guidance(self, images, targets):
        return {}

    def objective(self, targets, pred, guidance):
        return self.loss_fn(targets[self.target], pred), {}

    def train_step(self, data):
        images, targets = data
        guidance = self.guidance(images, targets)  # frozen teachers run outside the tape
        with tf.GradientTape() as tape:
            pred = self.net(images, training=True)
            loss, parts = self.objective(targets, pred, guidance)
            loss = loss + tf.add_n(self.net.losses) if self.net.losses else loss
            # the optimizer sums gradients over replicas: divide to keep the global-batch mean
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self.trackers["loss"].update_state(loss)
        self.trackers["nme"].update_state(tf_batch_nme(pred, targets["hard"], self.nme_pair))
        for k, v in parts.items():
            self.trackers[k].update_state(v)
        return {k: m.result() for k, m in self.trackers.items()}


class Distiller(LandmarkTrainer):
    """The student under KD-Loss with two frozen teachers in inference mode on the same augmented batch.

    ``tough`` and ``tolerant`` None: the teachers' outputs come with each batch, as its "tough" and "tolerant"
    targets (computed once by ``edgekd data teach``; teacher_targets.py), and no teacher runs during training.
    """

    components = ("main", "aloss_tough", "aloss_tol")

    def __init__(self, student, tough, tolerant, kd: KDLossConfig, nme_pair, flip_permutation=None, **kwargs):
        super().__init__(student, "hard", nme_pair, **kwargs)
        if (tough is None) != (tolerant is None):
            raise ValueError("Distiller: give both teachers, or neither (their outputs then come with the batch)")
        for teacher in (tough, tolerant):
            if teacher is not None:
                teacher.trainable = False
        self.tough, self.tolerant, self.kd = tough, tolerant, kd
        self.flip_permutation = None if flip_permutation is None else list(flip_permutation)

    def guidance(self, images, targets):
        if self.tough is None:
            return {"A": tf.stop_gradient(targets["tough"]), "S": tf.stop_gradient(targets["tolerant"])}
        return {"A": teach(self.tough, images, self.flip_permutation),
                "S": teach(self.tolerant, images, self.flip_permutation)}

    def objective(self, targets, pred, guidance):
        return kd_loss(targets["hard"], pred, guidance["A"], guidance["S"], self.kd)


class Mimic(LandmarkTrainer):
    """Trains ``net`` toward a frozen ``reference`` network's outputs on the same augmented batch, with a plain loss
    by name: its target is (1 - blend) x the ground truth + blend x the reference's output (flip-averaged with a
    flip permutation).

    QAT uses blend 1: the int8-simulated network should compute what its float twin does (against the ground truth
    the fine-tune also chases the float network's remaining errors). With a better or a flip-averaged teacher it
    is distillation of the teacher's positions into a plain student (Hinton et al.'s soft targets, for regression):
    a student fitting its own flip average learns, in one pass, part of what the second pass adds (edgekd
    0.9.0: about a fifth).
    """

    def __init__(self, net, reference, nme_pair, loss: str = "l1", blend: float = 1.0, flip_permutation=None,
                 **kwargs):
        super().__init__(net, "hard", nme_pair, loss, **kwargs)
        if not 0.0 < blend <= 1.0:
            raise ValueError(f"Mimic: blend {blend} is not in (0, 1]")
        reference.trainable = False
        self.reference, self.blend = reference, float(blend)
        self.flip_permutation = None if flip_permutation is None else list(flip_permutation)

    def guidance(self, images, targets):
        return {"reference": teach(self.reference, images, self.flip_permutation)}

    def objective(self, targets, pred, guidance):
        target = guidance["reference"]
        if self.blend < 1.0:
            target = (1.0 - self.blend) * targets["hard"] + self.blend * target
        return self.loss_fn(target, pred), {}
