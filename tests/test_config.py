"""Config: defaults, overrides in every form, aliases, YAML files, and errors."""
import pytest

from src.config import ConfigError, load_config


def test_defaults_load():
    cfg = load_config([])
    assert cfg.features.window == "hamming"
    assert cfg.model.hidden_size == 256


def test_override_forms():
    cfg = load_config(["--train.learning_rate=1e-3", "--batch_size", "4", "--device_target=GPU",
                       "--model.bidirectional=false", "--eval.manifests=a.csv,b.json"])
    assert cfg.train.learning_rate == pytest.approx(1e-3)  # "1e-3" is a string to YAML 1.1
    assert cfg.data.batch_size == 4 and isinstance(cfg.data.batch_size, int)
    assert cfg.device_target == "GPU"
    assert cfg.model.bidirectional is False
    assert cfg.eval.manifests == ["a.csv", "b.json"]


def test_zoo_aliases_per_entry_point():
    assert load_config(["--pretrain_ckpt", "a.ckpt"], entry="eval").eval.checkpoint == "a.ckpt"
    assert load_config(["--pre_trained_model_path=b.ckpt"],
                       entry="export").export.checkpoint == "b.ckpt"
    cfg = load_config(["--pre_trained_model_path=c.ckpt"], entry="train")
    assert cfg.train.pre_trained_model_path == "c.ckpt" and cfg.export.checkpoint == ""


def test_entry_section_wins_for_shared_leaf_names():
    cfg = load_config(["--checkpoint=x.ckpt"], entry="eval")
    assert cfg.eval.checkpoint == "x.ckpt" and cfg.export.checkpoint == ""


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown config key 'lerning_rate'"):
        load_config(["--lerning_rate=1"])


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.epochs.*expects a int"):
        load_config(["--train.epochs=many"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        load_config(["positional"])


def test_yaml_file_merge_and_unknown_key(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  hidden_size: 1024\n  num_layers: 5\n")
    cfg = load_config(["--config_path", str(good), "--num_layers=2"])
    assert (cfg.model.hidden_size, cfg.model.num_layers) == (1024, 2)  # CLI beats the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hiden_size: 3\n")
    with pytest.raises(ConfigError, match="model.hiden_size"):
        load_config(["--config_path", str(bad)])
    with pytest.raises(ConfigError, match="not found"):
        load_config(["--config_path", str(tmp_path / "missing.yaml")])


def test_shipped_config_files_load():
    import glob
    files = glob.glob("src/configs/*.yaml")
    assert files
    for path in files:
        cfg = load_config(["--config_path", path])
        assert cfg.config_files == [path]
