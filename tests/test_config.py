"""Config: official files load unchanged, unknown keys and bad values name the key, --set works."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ijepa.training.config import Config, ConfigError, from_dict, load_config

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
        ({"data": {"image_folder": None}}, "data.image_folder: expected a string, got nothing"),
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
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(OFFICIAL, ["lr=1"])
    with pytest.raises(ConfigError, match="optimization.nope"):
        load_config(OFFICIAL, ["optimization.nope=1"])


def test_missing_and_invalid_yaml_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def _cli(args: list[str]):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--set", "optimization.lrr=1"], "optimization.lrr: unknown config key"),
        (["--set", "oops"], "expected section.key=value"),
        (["--config", "/nonexistent/cfg.yaml"], "/nonexistent/cfg.yaml: config file not found"),
        (["--set", "data.dataset=imagefolder", "--set", "data.image_folder="], "data.image_folder: expected a string, got nothing"),
        (["--set", "logging.checkpoint_every=0"], "logging.checkpoint_every: expected >= 1, got 0"),
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
