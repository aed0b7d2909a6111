"""Settings shared by the training tests: a stage small enough to run in seconds on 2 cores."""

# input 64 (the tiny prepared folder), MobileNetV2 width 0.35, two epochs of two steps
TINY = dict(epochs=2, batch_size=8, alpha=0.35, steps_per_epoch=2, bn_recalibration_samples=8, progress=False)
