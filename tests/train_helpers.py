"""Settings and networks shared by the training tests: small enough to run in seconds on 2 cores."""
import tf_keras as keras

# input 64 (the tiny prepared folder), MobileNetV2 width 0.35, two epochs of two steps
TINY = dict(epochs=2, batch_size=8, alpha=0.35, steps_per_epoch=2, bn_recalibration_samples=8, progress=False)


def small_net(points: int = 4, size: int = 16):
    """A convolution with BatchNorm and a landmark layer: what the trainers touch, for tests of the trainers
    themselves (building and tracing MobileNetV2s there took tens of seconds on one core)."""
    x = keras.Input((size, size, 3))
    y = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, strides=2)(x)))
    return keras.Model(x, keras.layers.Dense(2 * points)(keras.layers.GlobalAveragePooling2D()(y)))
