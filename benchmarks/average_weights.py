"""Average the weights of checkpoints fine-tuned from one start (a "model soup", Wortsman et al., ICML 2022).

Restarts from the same checkpoint (say with L1 and with the Wing loss) end in one basin of the loss, so their mean
is a network too, often better than either; whether it is here is read on the validation split by `edgekd export`,
which scores every model it writes. The averaged BatchNorm statistics do not belong to the averaged weights, so
they are re-estimated on augmented training crops of the prepared data the first input was trained on, as
training does before every validation (``recalibrate_batchnorm``). The result is an ordinary checkpoint: the
first input's edgekd info (stage, scheme, crop, prepared data) with the list of inputs, and a config.json beside it
with the first input's training settings, which `edgekd export --qat` fine-tunes with (loss, augmentation).

    .venv/bin/python benchmarks/average_weights.py RUN/plain-longer/baseline/best.h5 RUN/plain-wing/baseline/best.h5 \\
        --out RUN/soup/baseline/best.h5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core.checkpoint import checkpoint_info, load_model, save_checkpoint  # noqa: E402
from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.core.fileio import write_json  # noqa: E402


def average(paths: list[Path], out: Path, bn_samples: int = 256, seed: int = 0) -> dict:
    """Write the element-wise mean of the checkpoints' weights to ``out``, BatchNorm statistics re-estimated on
    ``bn_samples`` augmented training crops (0: kept as averaged)."""
    if len(paths) < 2:
        raise EdgekdError("give two or more checkpoints to average")
    if out.resolve() in {p.resolve() for p in paths}:
        raise EdgekdError(f"--out {out}: is one of the inputs; write the average to a new file")
    if not _train_config(paths[0]):  # guessing would be silently wrong: other crops' BatchNorm cost 0.05 NME here
        raise EdgekdError(f"{paths[0]}: no config.json of its run beside it (with its training settings), to say how "
                          f"that run augmented its crops and what export --qat fine-tunes with; copy the run's "
                          f"config.json next to it")
    nets = [load_model(p) for p in paths]
    shapes = [[w.shape for w in n.get_weights()] for n in nets]
    for p, s in zip(paths[1:], shapes[1:]):
        if s != shapes[0]:
            raise EdgekdError(f"{p}: not the same network as {paths[0]} (weights differ in number or shape)")
    mean = [sum(ws) / len(ws) for ws in zip(*(n.get_weights() for n in nets))]
    nets[0].set_weights(mean)
    info = {k: v for k, v in checkpoint_info(paths[0]).items() if k not in ("val_nme", "val_nme_soft", "epoch")}
    info["averaged_from"] = [str(p) for p in paths]
    if bn_samples > 0:
        _recalibrate(nets[0], info, paths[0], bn_samples, seed)
    info["bn_recalibration_samples"] = bn_samples
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(nets[0], out, info)
    write_json(out.parent / "config.json", {"averaged_from": info["averaged_from"], "prepared": info.get("prepared"),
                                            "train": _train_config(paths[0])})
    return info


def _train_config(first: Path) -> dict:
    config = first.parent / "config.json"
    return json.loads(config.read_text()).get("train", {}) if config.is_file() else {}


def _recalibrate(net, info: dict, first: Path, samples: int, seed: int) -> None:
    """BatchNorm statistics from augmented training crops, augmented as the first input's run trained."""
    from edgekd.data.augment import AugmentConfig
    from edgekd.data.pipeline import PreparedData, make_dataset
    from edgekd.models.backbones import recalibrate_batchnorm

    train = _train_config(first)
    prepared = info.get("prepared")
    if not prepared or not (Path(prepared) / "manifest.json").is_file():
        raise EdgekdError(f"{first}: the prepared data it was trained on ({prepared}) is not there; it is needed to "
                          f"re-estimate BatchNorm statistics (or pass --bn-samples 0)")
    augment = AugmentConfig.preset(train.get("augment_preset", "full")) if train.get("augment", True) else False
    ds = make_dataset(PreparedData.open(prepared), "train", 32, augment=augment, seed=seed, shuffle=True)
    recalibrate_batchnorm(net, ds, -(-samples // 32))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="best.h5 files of one network")
    ap.add_argument("--out", type=Path, required=True, help="the averaged checkpoint to write (.h5)")
    ap.add_argument("--bn-samples", type=int, default=256, help="training crops to re-estimate BatchNorm on")
    args = ap.parse_args(argv)
    try:
        average(args.checkpoints, args.out, args.bn_samples)
    except EdgekdError as e:
        sys.exit(f"error: {e}")
    print(f"averaged {len(args.checkpoints)} checkpoints -> {args.out}")


if __name__ == "__main__":
    main()
