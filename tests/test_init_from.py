"""`train --init-from`: a run that starts from another run's checkpoint or from a float32 export, at another input
size or head (fine-tuning), on the tiny real 300-W sample."""
import json

import edgekd  # noqa: F401
import numpy as np
import pytest
import tf_keras as keras

import edgekd.data.pipeline as pipeline
import edgekd.models.backbones as models
from edgekd.core.checkpoint import LAST, checkpoint_info, load_model
from edgekd.core.errors import ModelError
from edgekd.data.prepare import PrepareConfig, prepare
from edgekd.training.config import TrainConfig
from edgekd.training.train import train
from train_helpers import TINY


@pytest.fixture(scope="module")
def prepared_96(tiny_300w_root, tmp_path_factory):
    """The tiny sample prepared at input 96 (the default margin): the other input size a run starts at."""
    out = tmp_path_factory.mktemp("prepared") / "300w-96"
    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=96, val_fraction=0.1), out,
            progress=False)
    return out


def test_init_from_fine_tunes_at_another_input_size_and_head(tiny_300w_root, tiny_prepared, prepared_96, tmp_path,
                                                             one_epoch_baseline):
    """A 64 px GAP-head checkpoint starts a 96 px spatial-head run (same backbone weights, the input size is the new
    data's, the head converted; the run records where it started); another crop margin changes what the coordinates
    mean and is refused, and so is a spatial checkpoint of another input size (its Dense layer depends on it)."""
    from edgekd.models.backbones import HEAD_NAME, head_of

    source = one_epoch_baseline / "baseline" / "best.h5"
    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=64, margin=0.25, val_fraction=0.1),
            tmp_path / "p64", progress=False)
    cfg = TrainConfig(stage="baseline", **{**TINY, "epochs": 1, "learning_rate": 1e-9, "schedule": "inverse-time",
                                           "lr_decay": 0.0, "init_from": str(source), "head": "spatial"})
    train(prepared_96, tmp_path / "ft", cfg)
    tuned = load_model(tmp_path / "ft" / "baseline" / LAST)
    assert tuned.input_shape[1:3] == (96, 96) and head_of(tuned) == "spatial"
    start = load_model(source)
    convs = [layer.name for layer in start.layers if layer.name != HEAD_NAME and any(
        w.ndim >= 2 for w in layer.get_weights())]
    assert len(convs) > 30 and all(np.allclose(start.get_layer(n).get_weights()[0], tuned.get_layer(n).get_weights()[0],
                                               atol=1e-6) for n in convs)
    kernel, bias = start.get_layer(HEAD_NAME).get_weights()  # lr 1e-9: the converted head is still there
    np.testing.assert_allclose(tuned.get_layer("head_reduce").get_weights()[0][0, 0], kernel, atol=1e-6)
    np.testing.assert_allclose(tuned.get_layer(HEAD_NAME).get_weights()[1], bias, atol=1e-6)
    info = checkpoint_info(tmp_path / "ft" / "baseline" / LAST)
    assert (info["input_size"], info["head"]) == (96, "spatial")
    with pytest.raises(ModelError, match="a spatial head's Dense layer depends on the input size"):
        train(tiny_prepared, tmp_path / "back", TrainConfig(**{**cfg.__dict__,
                                                               "init_from": str(tmp_path / "ft" / "baseline" / LAST)}))
    config = json.loads((tmp_path / "ft" / "baseline" / "config.json").read_text())
    assert config["train"]["head"] == "spatial" and config["init_from"] == str(source.resolve())
    with pytest.raises(ModelError, match="was trained on another crop"):
        train(tmp_path / "p64", tmp_path / "margin", cfg)


def _naive_split(net):
    """The same folded function with BatchNorm as a plain shift (gamma 1, mean 0): exact in inference mode only."""
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            shift = beta - mean * gamma / np.sqrt(var + layer.epsilon)
            layer.set_weights([np.ones_like(gamma), shift, np.zeros_like(mean), np.ones_like(var) - layer.epsilon])


def test_init_from_a_float32_tflite_export(tiny_prepared, prepared_96, tmp_path, one_epoch_baseline):
    """A float32 export starts a run as the network it was exported from: the rebuilt network matches the .tflite
    in inference mode, and in training mode (batch statistics) it stays near that function, unlike a split that
    puts the folded bias in beta alone; int8 files are refused (their weights are rounded)."""
    from edgekd.training import tflite_weights
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.training.qat import calibration_images

    source = one_epoch_baseline / "baseline" / "best.h5"
    tflite = tmp_path / "start.tflite"
    export_model(ExportConfig(source, tflite, "float32", tiny_prepared, latency_runs=2, progress=False))
    data = pipeline.PreparedData.open(tiny_prepared)
    images = calibration_images(data, 24, seed=1, augment="light")
    original = load_model(source)
    rebuilt = models.build_network(68, 64, models.NetworkConfig(alpha=0.35, head_init="default"))
    done = tflite_weights.load_into(rebuilt, tflite, images)
    assert done["layers"] == 53 and done["batchnorms"] == 52 and done["max_output_diff"] < 1e-4
    np.testing.assert_allclose(rebuilt(images).numpy(), original(images).numpy(), atol=1e-4)
    drift = np.abs(rebuilt(images, training=True).numpy() - rebuilt(images).numpy()).mean()
    naive = models.build_network(68, 64, models.NetworkConfig(alpha=0.35, head_init="default"))
    naive.set_weights(rebuilt.get_weights())
    _naive_split(naive)
    np.testing.assert_allclose(naive(images).numpy(), original(images).numpy(), atol=1e-4)
    naive_drift = np.abs(naive(images, training=True).numpy() - naive(images).numpy()).mean()
    assert drift < 0.2 * naive_drift, (drift, naive_drift)

    # one run checks both: the file starts a spatial-head run, its backbone as the exported network's and its head
    # converted from the GAP head (models.gap_to_spatial), as a GAP checkpoint does
    cfg = TrainConfig(stage="baseline", **{**TINY, "epochs": 1, "learning_rate": 1e-9, "schedule": "inverse-time",
                                           "lr_decay": 0.0, "init_from": str(tflite)})
    train(tiny_prepared, tmp_path / "sp", TrainConfig(**{**cfg.__dict__, "head": "spatial"}))
    spatial = load_model(tmp_path / "sp" / "baseline" / LAST)
    kernels = [layer.name for layer in original.layers if isinstance(layer, keras.layers.Conv2D)]
    for name in kernels:  # BatchNorm folded into the kernels and split again: equal up to a per-channel scale
        a, b = original.get_layer(name).get_weights()[0], spatial.get_layer(name).get_weights()[0]
        ratio = (a * b).sum(axis=(0, 1, 2)) / np.maximum((b * b).sum(axis=(0, 1, 2)), 1e-12)
        np.testing.assert_allclose(a, b * ratio, atol=1e-4 * np.abs(a).max())
    assert json.loads((tmp_path / "sp" / "baseline" / "config.json").read_text())["init_from"] == str(tflite.resolve())
    assert models.head_of(spatial) == "spatial"
    kernel, bias = rebuilt.get_layer(models.HEAD_NAME).get_weights()
    np.testing.assert_allclose(spatial.get_layer(models.REDUCE_NAME).get_weights()[0][0, 0], kernel, atol=1e-6)
    np.testing.assert_allclose(spatial.get_layer(models.HEAD_NAME).get_weights()[1], bias, atol=1e-6)

    # ... but a spatial file starts only a run of its own input size (its Dense layer depends on it)
    export_model(ExportConfig(tmp_path / "sp" / "baseline" / LAST, tmp_path / "sp.tflite", "float32", tiny_prepared,
                              latency_runs=2, progress=False))
    with pytest.raises(ModelError, match=r"sp\.tflite: a spatial head's Dense layer depends on the input size \(64 px"):
        train(prepared_96, tmp_path / "sp96", TrainConfig(**{**cfg.__dict__, "head": "spatial",
                                                                  "init_from": str(tmp_path / "sp.tflite")}))
    assert not (tmp_path / "sp96").exists()

    # at another input size the file is run at that size for the check (a GAP network's weights fit any size)
    big = models.build_network(68, 96, models.NetworkConfig(alpha=0.35, head_init="default"))
    wide = np.random.default_rng(2).random((4, 96, 96, 3), np.float32)
    assert tflite_weights.load_into(big, tflite, wide)["max_output_diff"] < 1e-4

    # refused in one line, before any folder is made: rounded or run-time weights, another network
    for mode in ("int8", "float16"):
        export_model(ExportConfig(source, tmp_path / f"{mode}.tflite", mode, tiny_prepared, calibration_samples=8,
                                  latency_runs=2, progress=False, tolerance=50.0))
        with pytest.raises(ModelError, match=rf"{mode}\.tflite: its weights are \S*{mode}\S* .*needs a float32"):
            train(tiny_prepared, tmp_path / mode, TrainConfig(stage="baseline", **TINY,
                                                              init_from=str(tmp_path / f"{mode}.tflite")))
    with pytest.raises(ModelError, match=r"start\.tflite: op \d+ \(\w+\) has weights .* this run's layer"):
        train(tiny_prepared, tmp_path / "w", TrainConfig(stage="baseline", **{**TINY, "alpha": 0.5},
                                                         init_from=str(tflite)))
    assert not any((tmp_path / d).exists() for d in ("int8", "float16", "w"))
