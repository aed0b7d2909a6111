"""One config, one name per setting (issue #29): each setting is declared once, as a config field with its default
and help, and the command line's options are made from those fields under the fields' own names."""
import dataclasses
import json

import click
import pytest
from click.testing import CliRunner

from edgekd.bench.config import BenchConfig
from edgekd.cli.app import SettingOption
from edgekd.cli.main import main
from edgekd.data.prepare import PrepareConfig
from edgekd.core.settings import default_of, option
from edgekd.export.config import ExportConfig
from edgekd.models.losses import KDLossConfig
from edgekd.training.config import TrainConfig

# The visible spellings that are not "--" + a field's name, each shared with another verb or kept for users, and the
# field it sets; every other option of a verb is either a field's own or one of NOT_SETTINGS.
USER_FACING = {
    ("train",): {"--augment": "augment_preset", "--no-augment": "augment", "--loss-variant": "kd"},
    ("export",): {"--int8": "mode", "--qat": "mode", "--float16": "mode", "--dynamic": "mode"},
    # every verb names a dataset root --root and a folder it writes --out-dir; the phone's own settings
    ("data", "prepare"): {},
    ("bench",): {"--root": "data", "--out-dir": "out", "--serial": "device_options", "--adb": "device_options",
                 "--apk": "device_options", "--benchmark-binary": "device_options"},
}
# options that are not settings of the config: what to run, where, and how
NOT_SETTINGS = {
    ("train",): {"--run-dir", "--stage", "--recipe", "--resume", "--dry-run", "--help"},
    ("export",): {"--help"},
    ("bench",): {"--name", "--exist-ok", "--help"},  # the run folder, as every verb that writes one
    ("data", "prepare"): {"--out-dir", "--force", "--help"},  # where to write, and whether to replace it
}
CONFIGS = {("train",): TrainConfig, ("export",): ExportConfig, ("bench",): BenchConfig,
           ("data", "prepare"): PrepareConfig}


def _fields(cls, prefix=""):
    """Dotted path -> field of every leaf field of a config (nested dataclasses expanded)."""
    out = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else None) or f.name == "kd":
            out.update(_fields(KDLossConfig, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = f
    return out


def _command(path):
    cmd = main
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", sorted(CONFIGS))
def test_every_option_is_one_field_under_its_own_name_with_the_fields_default(path):
    cmd, fields = _command(path), _fields(CONFIGS[path])
    ctx = click.Context(cmd)
    seen = {}
    for p in cmd.params:
        if not isinstance(p, click.Option):
            continue
        visible = [o for o in p.opts if o not in getattr(p, "old", ())]
        assert len(visible) == 1, (path, p.opts)
        name = visible[0]
        if name in NOT_SETTINGS[path]:
            assert not isinstance(p, SettingOption), name
            continue
        if name in USER_FACING[path]:
            continue
        assert isinstance(p, SettingOption), f"{name}: an option of its own, not made from a config field"
        assert name == option(p.setting), f"{name} sets {p.setting}: the option must be named after the field"
        assert p.setting in fields, f"{name}: {p.setting} is not a field of {CONFIGS[path].__name__}"
        assert p.setting not in seen, f"{p.setting} has two options: {seen[p.setting]} and {name}"
        seen[p.setting] = name
        # no default of its own: None ("not given"), or none at all for a required one (click's UNSET)
        assert p.default is None or (p.required and type(p.default).__name__ == "Sentinel"), \
            f"{name}: a default of its own ({p.default!r}); the field's is the only one"
        default = default_of(fields[p.setting])
        help_text = p.get_help_record(ctx)[1]
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        if default not in (None, dataclasses.MISSING, "") and not p.is_flag:
            assert f"[default: {default}]" in help_text, (name, help_text)
        elif p.is_flag and p.secondary_opts:
            shown = name[2:] if default else f"no-{name[2:]}"
            assert f"[default: {shown}]" in help_text, (name, help_text)
    for alias, field in USER_FACING[path].items():
        assert field in fields or field == "kd", alias
        assert any(alias in p.opts for p in cmd.params), f"{alias}: listed but not an option"


def test_a_setting_declared_twice_is_caught():
    """The check above fails for an option with a default of its own: the default would then be written twice."""
    cmd = _command(("train",))
    lr = next(p for p in cmd.params if isinstance(p, SettingOption) and p.setting == "learning_rate")
    lr.default = 1e-3
    try:
        with pytest.raises(AssertionError, match="a default of its own"):
            test_every_option_is_one_field_under_its_own_name_with_the_fields_default(("train",))
    finally:
        lr.default = None


def _fake_train(monkeypatch):
    import edgekd.training.train

    seen = {}

    def fake_train(prepared, run_dir, cfg, resume=False, explicit=None, **kw):
        seen.update(cfg=cfg, explicit=explicit)
        return {}

    monkeypatch.setattr(edgekd.training.train, "train", fake_train)
    return seen


@pytest.mark.parametrize("old, new, field, value", [
    ("--lr", "--learning-rate", "learning_rate", 3e-4),
    ("--main-loss", "--kd-main", "kd.main", "wing"),
    ("--teacher-blend", "--kd-teacher-blend", "kd.teacher_blend", 0.5),
])
def test_old_spellings_still_work_and_are_hidden(tiny_prepared, tmp_path, monkeypatch, old, new, field, value):
    seen = _fake_train(monkeypatch)
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert f"{new} " in help_text and f"{old} " not in help_text
    for spelling in (old, new):
        r = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path), "--stage", "baseline",
                                      "--kd-main", "l1", spelling, str(value)])
        assert r.exit_code == 0, r.output
        cfg = seen["cfg"]
        got = getattr(cfg.kd, field[3:]) if field.startswith("kd.") else getattr(cfg, field)
        assert got == value and field.split(".")[0] in seen["explicit"], spelling


def test_an_explicit_option_wins_over_the_recipe_even_at_the_default(tiny_prepared, tmp_path, monkeypatch):
    """The default recipe's tolerant stage sets learning_rate 3e-4; --learning-rate 1e-3 (the field's default) given on
    the command line wins over it, and an option left out leaves the recipe's value."""
    from edgekd.recipes import runner

    seen = {}
    monkeypatch.setattr(runner, "run", lambda prepared, run_dir, loaded, **kw: seen.setdefault("r", loaded) and {})
    args = ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r")]
    CliRunner().invoke(main, args)
    assert seen.pop("r").stage("tolerant").settings["learning_rate"] == 3e-4
    CliRunner().invoke(main, [*args, "--learning-rate", "1e-3", "--no-kd-ramp"])
    loaded = seen.pop("r")
    assert loaded.stage("tolerant").settings["learning_rate"] == 1e-3
    assert loaded.stage("student").settings["kd"]["ramp"] is False


def test_train_refuses_a_contradiction_and_stage_settings_with_a_recipe(tiny_prepared, tmp_path):
    for extra, words in ((["--no-augment", "--augment", "full"], "--no-augment and --augment full: choose one"),
                         (["--teachers-dir", str(tmp_path)], "--teachers-dir: a recipe's stages start from each "
                                                             "other"),
                         (["--learning-rate", "0", "--stage", "baseline"], "--learning-rate 0.0: expected a number > 0"),
                         (["--kd-c", "0", "--stage", "baseline"], "--kd-c 0.0: expected a number > 0")):
        r = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), *extra])
        assert r.exit_code == 2 and r.output.strip().splitlines() == [r.output.strip()], r.output
        assert words in r.output, r.output


def test_a_recorded_config_loads_back():
    """config.json holds to_dict(); from_dict reads it back, records of earlier versions (one teachers_dir string,
    a kd dict without teacher_blend) included; an unknown key is refused, not dropped."""
    from edgekd.core.errors import EdgekdError

    cfg = TrainConfig(stage="tough", learning_rate=3e-4, teachers_dir=["a", "b"], kd=KDLossConfig(main="l1"))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {**TrainConfig().to_dict(), "teachers_dir": "t", "kd": {"c": 0.4, "main": "paper"}}
    back = TrainConfig.from_dict(old)
    assert back.teachers_dir == ["t"] and back.kd == KDLossConfig(c=0.4)
    with pytest.raises(EdgekdError, match="unknown keys \\['lr'\\]"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "lr": 1e-3})


def test_settings_are_read_flat_and_grouped():
    from edgekd.training.config import AugmentParams, DistillParams, NetworkParams, OptimizerParams, RunParams

    groups = (NetworkParams, OptimizerParams, AugmentParams, DistillParams, RunParams)
    names = [f.name for g in groups for f in dataclasses.fields(g)]
    assert len(names) == len(set(names)), "a field in two groups"
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig)), "a field without help"
    assert TrainConfig(learning_rate=0.5).learning_rate == 0.5 and isinstance(TrainConfig(), OptimizerParams)
