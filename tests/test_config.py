"""Config: defaults, overrides in every form, aliases, YAML files, paths, ranges and errors."""
import os

import pytest

from src.config import REPO, ConfigError, load_config


def test_defaults_load():
    cfg = load_config([])
    assert cfg.features.window == "hamming"
    assert cfg.model.hidden_size == 256


def test_override_forms(tmp_path):
    cfg = load_config(["--train.learning_rate=1e-3", "--batch_size", "4", "--device_target=GPU",
                       "--model.bidirectional=false", "--eval.manifests=a.csv,b.json"],
                      cwd=str(tmp_path))
    assert cfg.train.learning_rate == pytest.approx(1e-3)  # "1e-3" is a string to YAML 1.1
    assert cfg.data.batch_size == 4 and isinstance(cfg.data.batch_size, int)
    assert cfg.device_target == "GPU"
    assert cfg.model.bidirectional is False
    assert cfg.eval.manifests == [str(tmp_path / "a.csv"), str(tmp_path / "b.json")]


def test_zoo_aliases_per_entry_point():
    assert load_config(["--pretrain_ckpt", "/a.ckpt"], entry="eval").eval.checkpoint == "/a.ckpt"
    assert load_config(["--pre_trained_model_path=/b.ckpt"],
                       entry="export").export.checkpoint == "/b.ckpt"
    cfg = load_config(["--pre_trained_model_path=/c.ckpt"], entry="train")
    assert cfg.train.pre_trained_model_path == "/c.ckpt" and cfg.export.checkpoint == ""


def test_entry_section_wins_for_shared_leaf_names():
    cfg = load_config(["--checkpoint=/x.ckpt"], entry="eval")
    assert cfg.eval.checkpoint == "/x.ckpt" and cfg.export.checkpoint == ""


def test_repository_defaults_resolve_against_the_repo_and_typed_paths_against_cwd(tmp_path):
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("train:\n  log_dir: my_logs\n")
    cfg = load_config([f"--config_path={user_yaml}", "--checkpoint_dir=ck", "--resume=auto",
                       "--manifests=[t.csv, 'a,b/v.csv']", "--pre_trained_model_path=~/w.ckpt"],
                      cwd=str(tmp_path))
    assert cfg.labels_path == os.path.join(REPO, "labels.json")
    assert cfg.data.train_manifest == os.path.join(REPO, "data/sample/libri_train_manifest.csv")
    assert cfg.train.checkpoint_dir == str(tmp_path / "ck")
    assert cfg.train.log_dir == str(tmp_path / "my_logs")  # the user's own config file
    assert cfg.train.resume == "auto" and cfg.export.verify_audio == ""
    assert cfg.eval.manifests == [str(tmp_path / "t.csv"), str(tmp_path / "a,b/v.csv")]
    assert cfg.train.pre_trained_model_path == os.path.expanduser("~/w.ckpt")
    zoo = load_config(["--config_path=src/configs/librispeech_zoo.yaml"], cwd=REPO)
    assert zoo.data.train_manifest == os.path.join(REPO, "data/librispeech/libri_train_manifest.csv")


@pytest.mark.parametrize("arg,message", [
    ("--learning_rate=-1", "'train.learning_rate' must be > 0; got -1.0"),
    ("--batch_size=-2", "'data.batch_size' must be >= 1; got -2"),
    ("--batch_size=0", "'data.batch_size' must be >= 1; got 0"),
    ("--epochs=0", "'train.epochs' must be >= 1; got 0"),
    ("--num_buckets=0", "'data.num_buckets' must be >= 1; got 0"),
    ("--beta2=1", "'train.beta2' must be >= 0 and < 1; got 1.0"),
    ("--mode=eager", "'mode' must be one of graph, pynative; got 'eager'"),
    ("--jit_level=O9", "'train.jit_level' must be one of '', O0, O1, O2; got 'O9'"),
    ("--file_format=onnx", "'export.file_format' must be one of MINDIR, AIR, ONNX"),
    ("--unknown_chars=keep", "'data.unknown_chars' must be one of error, drop"),
])
def test_values_out_of_range_or_not_allowed_are_errors(arg, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        load_config([arg])


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
    files = glob.glob(os.path.join(REPO, "src/configs/*.yaml"))
    assert files
    for path in files:
        cfg = load_config(["--config_path", path])
        assert cfg.config_files == [path]
