"""Config: official files load unchanged, unknown keys and bad values name the key, --set works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ijepa.training.config import Config, from_dict, load_config
from ijepa.typedconfig import ConfigError

OFFICIAL = Path(__file__).parent / "fixtures" / "in1k_vith14_ep300.yaml"


def test_official_config_loads_unchanged():
    raw = yaml.safe_load(OFFICIAL.read_text())
    loaded = load_config(OFFICIAL).to_dict()
    for section, values in raw.items():
        for key, value in values.items():
            assert loaded[section][key] == value, f"{section}.{key}"
    assert loaded["meta"]["model_name"] == "vit_huge" and loaded["mask"]["patch_size"] == 14


def test_defaults_are_the_official_recipe():
    raw = yaml.safe_load(OFFICIAL.read_text())
    defaults = Config().to_dict()
    placeholders = {("data", "root_path"), ("logging", "folder")}
    for section, values in raw.items():
        for key, value in values.items():
            if (section, key) not in placeholders:
                assert defaults[section][key] == value, f"{section}.{key}"


def test_packaged_default_recipe_loads():
    cfg = load_config()
    assert cfg.data.dataset == "fashion-mnist" and cfg.meta.in_chans == 1
    assert cfg.data.crop_size % cfg.mask.patch_size == 0


@pytest.mark.parametrize(
    "raw,names",
    [
        ({"optimization": {"lrr": 1e-3}}, "optimization.lrr"),
        ({"model": {"depth": 2}}, "model"),
        ({"meta": {"use_bfloat16": "yes"}}, "meta.use_bfloat16"),
        ({"optimization": {"lr": "fast"}}, "optimization.lr"),
        ({"data": {"batch_size": 1.5}}, "data.batch_size"),
        ({"mask": {"aspect_ratio": [1.0]}}, "mask.aspect_ratio"),
        ({"meta": {"loss": "l1"}}, "meta.loss"),
        ({"data": {"use_gaussian_blur": True}}, "data.use_gaussian_blur"),
        ({"mask": 3}, "mask"),
        ({"logging": {"checkpoint_every": 0}}, "logging.checkpoint_every: expected >= 1"),
        ({"logging": {"log_every": 0}}, "logging.log_every: expected >= 1"),
        ({"logging": {"diag_every": -1}}, "logging.diag_every: expected >= 0"),
        ({"logging": {"keep_last": -1}}, "logging.keep_last: expected >= 0"),
        ({"data": {"dataset": "imagefolder", "image_folder": ""}}, "data.image_folder: expected the image tree's folder"),
        ({"data": {"image_folder": None}}, "data.image_folder is None; expected str"),
        ({"data": {"color_jitter_strength": 0.5}}, "data.color_jitter_strength: not supported"),
        ({"meta": {"copy_data": True}}, "meta.copy_data: not supported"),
        ({"meta": {"read_checkpoint": "jepa-ep10.pth.tar"}}, "meta.read_checkpoint: set while meta.load_checkpoint is false"),
    ],
)
def test_bad_keys_and_values_name_the_key(raw, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        from_dict(raw)


def test_set_overrides_single_keys(tmp_path):
    cfg = load_config(
        OFFICIAL,
        ["optimization.lr=5e-4", "mask.aspect_ratio=[1, 2]", "meta.model_name=vit_small", "data.pin_mem=false"],
    )
    assert cfg.optimization.lr == 5e-4 and cfg.mask.aspect_ratio == (1.0, 2.0)
    assert cfg.meta.model_name == "vit_small" and cfg.data.pin_mem is False
    assert cfg.optimization.epochs == 300  # untouched keys keep the file's values
    assert load_config(OFFICIAL).optimization.lr == 1e-3  # the file itself is not modified
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lr \(did you mean optimization\.lr\?\)"):
        load_config(OFFICIAL, ["lr=1"])
    with pytest.raises(ConfigError, match="optimization.nope"):
        load_config(OFFICIAL, ["optimization.nope=1"])


def test_missing_and_invalid_yaml_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML at line 2"):
        load_config(bad)


def _cli(args: list[str]):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--set", "optimization.lrr=1"], "unknown key(s) optimization.lrr"),
        (["--set", "oops"], "--set 'oops': expected key=value"),
        (["--config", "/nonexistent/cfg.yaml"], "/nonexistent/cfg.yaml: config file not found"),
        (["--set", "data.dataset=imagefolder", "--set", "data.image_folder="], "data.image_folder is None; expected str"),
        (["--set", "logging.checkpoint_every=0"], "logging.checkpoint_every: expected >= 1, got 0"),
        (["--set", "optimization.lrr=1"], "unknown key(s) optimization.lrr (did you mean optimization.lr?); expected some of optimization.ema,"),
        (["--set", "optimization.batch_size=32"], "unknown key(s) optimization.batch_size (did you mean data.batch_size?)"),
        (["--set", "lr=1"], "unknown key(s) lr (did you mean optimization.lr?); expected some of data, logging, mask, meta, optimization"),
        (["--set", "optim.lr=1"], "unknown key(s) optim (did you mean optimization?)"),
    ],
)
def test_cli_errors_exit_2_with_one_line(args, expect):
    result = _cli(["pretrain", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0] and lines[0].startswith("error:"), result.output


def test_cli_error_is_one_line_even_when_long(tmp_path):
    """Rich must not wrap a long path over several lines (the console is 80 columns here)."""
    long = tmp_path / ("d" * 150) / "cfg.yaml"
    result = _cli(["pretrain", "--config", str(long)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {long}: config file not found"]


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads `1e-3` as a string; configs and --set write it that way all the time."""
    path = tmp_path / "cfg.yaml"
    path.write_text("optimization:\n  lr: 1e-3\n  final_lr: 1E-6\ndata:\n  batch_size: 64\n")
    cfg = load_config(path, ["optimization.start_lr=2e-4"])
    assert (cfg.optimization.lr, cfg.optimization.final_lr, cfg.optimization.start_lr) == (1e-3, 1e-6, 2e-4)


@pytest.mark.parametrize(("override", "expect"), [
    ("optimization.lr=.nan", "optimization.lr is nan; expected a finite number"),
    ("optimization.lr=.inf", "optimization.lr is inf; expected a finite number"),
    ("optimization.final_weight_decay=-.inf", "optimization.final_weight_decay is -inf; expected a finite number"),
    ("optimization.epochs=.inf", "optimization.epochs is inf; expected a finite number"),
    ("data.crop_scale=[.nan, 1]", "data.crop_scale is [nan, 1]; expected a finite number"),
    ("optimization.warmup=400", "optimization.warmup: 400 epochs of warm-up are longer than the run's optimization.epochs 300 "
                                "(the lr would never reach its peak); expected warmup <= epochs"),
])
def test_non_finite_floats_and_a_warmup_longer_than_the_run_are_refused(override, expect):
    """A NaN lr passed every range check (NaN compares false) and trained nothing; epochs=.inf
    overflowed later; a warm-up past the end left the lr below its peak for the whole run."""
    with pytest.raises(ConfigError, match=f"^{re.escape(expect)}$"):
        load_config(OFFICIAL, [override])


def test_overrides_are_checked_together_whatever_their_order():
    """Crop and patch (or epochs and warm-up) are one change: checked after each --set, one
    order was refused (crop 32 against the file's patch 14) and the other not."""
    sets = ["data.crop_size=32", "mask.patch_size=4", "optimization.epochs=1", "optimization.warmup=0.5"]
    for order in (sets, sets[::-1]):
        cfg = load_config(OFFICIAL, order)
        assert (cfg.data.crop_size, cfg.mask.patch_size, cfg.optimization.epochs, cfg.optimization.warmup) == (32, 4, 1.0, 0.5)


def test_one_config_error_and_one_override_parser_for_pretraining_and_evals():
    from ijepa import typedconfig

    with pytest.raises(ConfigError) as pretraining:
        load_config(OFFICIAL, ["optimization.ema=[0.99, 1]", "oops"])
    with pytest.raises(ConfigError) as evals:
        typedconfig.parse_set("oops")
    assert str(pretraining.value) == str(evals.value)
    assert load_config(OFFICIAL, ["optimization.ema=[0.99, 1]"]).optimization.ema == (0.99, 1.0)
