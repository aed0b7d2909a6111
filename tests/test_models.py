"""The teacher and student networks: flat, from scratch, right head, right size, BatchNorm recalibration."""
import edgekd  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from edgekd.core.errors import EdgekdError
from edgekd.models.backbones import HEAD_NAME, build_student, build_teacher, model_info, recalibrate_batchnorm


def _is_flat(model) -> bool:
    return not any(isinstance(layer, keras.Model) for layer in model.layers)


def test_student_size_matches_the_method_table():
    # METHOD.md §3: MobileNetV2-1.0 + Dense(136) at 224 has 2.432M params and about 0.30 G multiply-adds
    info = model_info(build_student(68, 224))
    assert info["params"] == pytest.approx(2.432e6, rel=1e-3)
    assert info["macs"] == pytest.approx(0.30e9, rel=0.02)
    assert info["outputs"] == 136


def _drop_rates(model):
    return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]


def test_teacher_is_flat_efficientnet_b3_scaling_unit_range_input_to_its_own():
    model = build_teacher(29, 64)
    assert _is_flat(model)
    assert model.output_shape == (None, 58) and model.get_layer(HEAD_NAME).units == 58
    # METHOD.md §3: EfficientNet-B3 + Dense(58) has 10.87M params (independent of input size)
    assert model.count_params() == pytest.approx(10.87e6, rel=2e-3)
    stem_input = keras.Model(model.input, model.get_layer("stem_conv_pad").input)
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    # the model takes [0, 1] pixels and its backbone sees [-1, 1] (models.MODELS), no hidden 1/255 rescaling
    np.testing.assert_allclose(stem_input(x).numpy(), 2 * x - 1, atol=1e-6)
    # the paper's regularisation by default: stochastic depth ramped to 0.2 over the blocks (Keras), head dropout 0.5
    rates = _drop_rates(model)
    assert rates[-1] == 0.5 and max(rates[:-1]) == pytest.approx(0.2 * 25 / 26, rel=1e-3)


def test_teacher_stochastic_depth_can_be_switched_off():
    assert _drop_rates(build_teacher(68, 64, dropout=0.0, stochastic_depth=0.0)) == []  # no head dropout either


def test_student_is_flat_and_wrappable_by_qat():
    from edgekd.training.qat import quantize_model

    model = build_student(68, 96, alpha=0.35)
    assert _is_flat(model) and model.output_shape == (None, 136)
    qat = quantize_model(model)
    assert qat.output_shape == (None, 136)


@pytest.mark.parametrize("size", [48, 100, 256])
def test_bad_input_sizes_are_refused(size):
    with pytest.raises(EdgekdError, match="multiple of 32"):
        build_student(68, size)


def test_recalibrate_batchnorm_stores_the_average_batch_statistics():
    model = build_student(5, 64, alpha=0.35)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    images = np.random.default_rng(1).random((24, 64, 64, 3), dtype=np.float32) * 0.5 + 2.0
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros((24, 10), np.float32))).batch(8)
    weights_before = [w.numpy().copy() for w in model.trainable_weights]
    assert recalibrate_batchnorm(model, ds, steps=10) == 3
    features = keras.Model(model.input, bn.input)(images).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean((0, 1, 2)), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), features.var((0, 1, 2)), rtol=0.05)
    assert bn.momentum == 0.99  # restored (models.NetworkConfig.bn_momentum)
    for before, after in zip(weights_before, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_recalibration_switches_dropout_off():
    """Statistics must describe the inference-mode network: with dropout left on, the variance after a 0.9
    dropout would be about ten times the input's."""
    inp = keras.Input((16,))
    drop = keras.layers.Dropout(0.9)
    bn = keras.layers.BatchNormalization()
    model = keras.Model(inp, bn(drop(inp)))
    x = np.random.default_rng(2).normal(1.0, 2.0, (64, 16)).astype(np.float32)
    assert recalibrate_batchnorm(model, tf.data.Dataset.from_tensor_slices(x).batch(64), steps=1) == 1
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.var(0), rtol=0.05)
    assert drop.rate == 0.9  # restored


def test_head_starts_at_the_mean_shape():
    """With head_init mean-shape the untrained network predicts the mean training shape for any image."""
    from edgekd.models.backbones import NetworkConfig, build_network

    mean = np.linspace(-0.4, 0.4, 136).astype(np.float32)
    model = build_network(68, 64, NetworkConfig(alpha=0.35), mean_shape=mean)
    out = model(np.random.default_rng(3).random((2, 64, 64, 3), dtype=np.float32), training=False).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(mean, out.shape), atol=0.05)
    with pytest.raises(EdgekdError, match="mean training shape"):
        build_network(68, 64, NetworkConfig(alpha=0.35))


def test_every_registered_backbone_builds_flat():
    from edgekd.models.backbones import MODELS, NetworkConfig, build_network

    for name in MODELS:
        model = build_network(5, 64, NetworkConfig(arch=name, alpha=0.35, head_init="default"))
        assert _is_flat(model) and model.output_shape == (None, 10), name


def test_spatial_head_starts_as_the_trained_gap_head_and_sees_positions():
    """gap_to_spatial gives the same outputs as the GAP network (any input); after a change of one position's
    weights the spatial head tells positions apart, which a GAP head cannot."""
    from edgekd.models.backbones import NetworkConfig, build_network, gap_to_spatial, head_of

    gap = build_network(68, 96, NetworkConfig(alpha=0.35, head_init="default"))
    rng = np.random.default_rng(0)
    gap.get_layer(HEAD_NAME).set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                                          for w in gap.get_layer(HEAD_NAME).get_weights()])
    x = rng.random((3, 96, 96, 3)).astype(np.float32)
    recalibrate_batchnorm(gap, tf.data.Dataset.from_tensor_slices(x).batch(3), steps=1)  # features far from 0
    spatial = build_network(68, 96, NetworkConfig(alpha=0.35, head="spatial"), np.zeros(136))
    assert (head_of(gap), head_of(spatial)) == ("gap", "spatial")
    assert spatial.get_layer("head_reduce").output_shape[1:] == (3, 3, 136)
    gap_to_spatial(gap, spatial)
    np.testing.assert_allclose(spatial(x, training=False), gap(x, training=False), atol=1e-5)
    # the heads alone, on feature maps whose positions are swapped: GAP cannot tell them apart, nor can the
    # converted spatial head; once one position's weights differ, the spatial head can
    gap_head = keras.Model(gap.get_layer("avg_pool").input, gap.output)
    spatial_head = keras.Model(spatial.get_layer("head_reduce").input, spatial.output)
    f = rng.random((1, 3, 3, 1280)).astype(np.float32)
    swapped = f.copy()
    swapped[:, 0, 0], swapped[:, 2, 1] = f[:, 2, 1], f[:, 0, 0]
    np.testing.assert_allclose(gap_head(f), gap_head(swapped), atol=1e-5)
    np.testing.assert_allclose(spatial_head(f), spatial_head(swapped), atol=1e-5)
    kernel, bias = spatial.get_layer(HEAD_NAME).get_weights()
    kernel[:136] *= 3.0  # the top-left position now counts three times
    spatial.get_layer(HEAD_NAME).set_weights([kernel, bias])
    assert np.abs(spatial_head(f) - spatial_head(swapped)).max() > 1e-3
    from edgekd.training.qat import quantize_model

    assert quantize_model(spatial).output_shape == (None, 136)
    with pytest.raises(EdgekdError, match="GAP-head source"):
        gap_to_spatial(spatial, gap)
    with pytest.raises(EdgekdError, match="unknown head 'fc'"):
        build_network(68, 96, NetworkConfig(alpha=0.35, head="fc"))



def test_network_macs_count_the_built_network():
    """The planning cost of any registered backbone is counted on the network itself, built aside (cached): the
    count is model_info.json's, and the width counts."""
    from edgekd.models.backbones import NetworkConfig, network_macs

    macs = network_macs(NetworkConfig(alpha=0.35), 64)
    assert macs == model_info(build_student(68, 64, alpha=0.35))["macs"]
    assert network_macs(NetworkConfig(alpha=1.0), 64) > 3 * macs
