"""One source of configuration: a YAML default, an optional YAML file, then command-line overrides.

    cfg = load_config(argv, entry="train")

Command-line forms (all equivalent): `--train.lr=1e-3`, `--train.lr 1e-3`, `--lr=1e-3` (a leaf
name is accepted when it is unique, the entry point's own section winning). `--config_path F`
merges the YAML file F over the defaults first. Unknown keys and values of the wrong type are
errors (ConfigError, one line naming the key). Flag names of the model zoo are accepted as
aliases (ALIASES). Allowed values and ranges (CHOICES, RANGES, check_device_options) are checked
here, before any entry point reads data. Nothing here runs at import time, and importing this
module (or loading a config) loads only yaml and easydict: the checks that need NumPy-based
modules (check_sections) run after src.env.prepare_environment, which must precede NumPy.

Paths (PATH_KEYS) come back absolute. A value from the defaults or from a config file inside the
repository (src/configs/) belongs to the repository and resolves against it; a value the user
typed (command line, or their own config file) resolves against the current directory.
A list value is YAML (`--manifests='[a.csv, "b,c/d.csv"]'`, which can hold any path) or, for
short, comma-separated (`--manifests=a.csv,b.csv`).
"""
import os

import yaml
from easydict import EasyDict

from src.errors import UserError

SRC_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SRC_DIR)
DEFAULT_CONFIG = os.path.join(SRC_DIR, "default_config.yaml")

# Keys that name files or folders ("" = not set; train.resume may also be "auto").
PATH_KEYS = ("labels_path", "data.train_manifest", "data.val_manifest",
             "train.pre_trained_model_path", "train.checkpoint_dir", "train.resume",
             "train.log_dir", "eval.checkpoint", "eval.manifests", "eval.output_dir",
             "export.checkpoint", "export.file_name", "export.verify_audio",
             "transcribe.checkpoint", "transcribe.mindir", "transcribe.onnx", "transcribe.output",
             "decode.lm_path", "augment.noise_dir", "tune_lm.checkpoint", "tune_lm.manifest",
             "tune_lm.output_dir", "serve.checkpoint", "serve.onnx", "serve.offline_checkpoint")

CHOICES = {
    "device_target": ("CPU", "GPU", "Ascend"),
    "mode": ("graph", "pynative"),
    "features.window": ("hamming", "hann", "hanning", "blackman", "bartlett"),
    "features.normalize": ("utterance", "global"),
    "data.unknown_chars": ("error", "drop"),
    "train.lr_scaling": ("linear", "none"),
    "train.lr_schedule": ("hold_anneal", "cosine"),
    "train.loss_scale": ("auto", "dynamic", "none"),
    "train.amp_level": ("O0", "O1", "O2", "O3"),
    "train.jit_level": ("", "O0", "O1", "O2"),
    "export.file_format": ("MINDIR", "AIR", "ONNX"),
    "export.quantize": ("none", "int8"),
    "transcribe.format": ("text", "json", "srt", "vtt"),
    "train.best_metric": ("cer", "wer"),
}

# key -> (lowest, highest, lowest excluded); None = unbounded.
RANGES = {
    "device_id": (0, None, False),
    "features.sample_rate": (1000, None, False),
    "features.window_size": (0, None, True),
    "features.window_stride": (0, None, True),
    "model.hidden_size": (1, None, False),
    "model.num_layers": (1, None, False),
    "model.lookahead": (0, None, False),
    "data.batch_size": (1, None, False),
    "data.num_buckets": (1, None, False),
    "data.max_duration": (0, None, True),
    "data.num_parallel_workers": (1, None, False),
    "data.read_threads": (1, None, False),
    "train.epochs": (1, None, False),
    "train.learning_rate": (0, None, True),
    "train.warmup_steps": (0, None, False),
    "train.hold_epochs": (0, None, False),
    "train.lr_anneal": (1, None, False),
    "train.weight_decay": (0, None, False),
    "train.beta1": (0, 1, False),
    "train.beta2": (0, 1, False),
    "train.eps": (0, None, True),
    "train.max_grad_norm": (0, None, False),
    "train.loss_scale_window": (1, None, False),
    "train.save_checkpoint_epochs": (1, None, False),
    "train.save_checkpoint_steps": (0, None, False),
    "train.keep_checkpoint_max": (0, None, False),
    "train.max_bad_steps": (0, None, False),
    "train.early_stop_patience": (0, None, False),
    "train.log_interval": (1, None, False),
    "export.frames": (0, None, False),
    "export.calibration_utterances": (1, None, False),
    "transcribe.chunk_seconds": (1, None, False),
    "augment.speed_perturb_from_epoch": (1, None, False),
    "augment.freq_masks": (0, None, False),
    "augment.freq_mask_width": (0, None, False),
    "augment.time_masks": (0, None, False),
    "augment.time_mask_ratio": (0, 1, False),
    "train.accumulate_steps": (1, None, False),
    "transcribe.chunks_per_batch": (1, None, False),
    "decode.beam_width": (1, None, False),
    "decode.alpha": (0, None, False),
    "decode.workers": (0, None, False),
    "tune_lm.alpha_steps": (1, None, False),
    "tune_lm.beta_steps": (1, None, False),
    "stream.chunk_ms": (0, None, True),
    "stream.endpoint_silence": (0, None, True),
    "stream.max_segment": (0, None, True),
    "serve.port": (0, 65535, False),
    "serve.max_streams": (1, None, False),
    "serve.max_batch": (1, None, False),
    "serve.max_upload_mb": (0, None, True),
    "serve.max_stream_seconds": (0, None, True),
    "serve.idle_timeout": (0, None, True),
    "serve.max_message_kb": (1, None, False),
}

# Zoo flag names -> keys of this repo, per entry point.
ALIASES = {
    "train": {"pre_trained_model_path": "train.pre_trained_model_path"},
    "eval": {"pretrain_ckpt": "eval.checkpoint", "pre_trained_model_path": "eval.checkpoint"},
    "export": {"pre_trained_model_path": "export.checkpoint"},
    "transcribe": {"pre_trained_model_path": "transcribe.checkpoint"},
    "tune_lm": {"pre_trained_model_path": "tune_lm.checkpoint"},
}


class ConfigError(UserError):
    """A configuration problem, worded for the user."""


def _flatten(tree, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _coerce(key, value, default):
    """Convert `value` (parsed YAML) to the type of `default`, or raise ConfigError."""
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # --speed_factors=1.1: a list of one
        if isinstance(value, list) and default and isinstance(default[0], float):
            return [_coerce(key, v, 0.0) for v in value]  # a list of numbers stays numbers
        if isinstance(value, list):
            return value
    raise ConfigError(f"config key '{key}' expects a {kind.__name__}, got {value!r}")


def _resolve(name, flat, entry):
    """Map a command-line name to a full dotted key."""
    if name in flat:
        return name
    alias = ALIASES.get(entry, {}).get(name)
    if alias:
        return alias
    matches = [k for k in flat if k.rsplit(".", 1)[-1] == name]
    own = [k for k in matches if k.startswith(f"{entry}.")]
    if len(own) == 1:
        return own[0]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"config key '{name}' is ambiguous: use one of {', '.join(matches)}")
    raise ConfigError(f"unknown config key '{name}' (see {DEFAULT_CONFIG} for all keys)")


def split_arguments(argv):
    """(option pairs, other arguments): ['--a.b=1', 'f.wav', '--c', 'x', '--flag'] ->
    ([('a.b', '1'), ('c', 'x'), ('flag', 'true')], ['f.wav']). `--key value` takes the next
    argument as its value unless that starts with --."""
    pairs, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            rest.append(arg)
            i += 1
            continue
        body = arg[2:]
        if "=" in body:
            name, raw = body.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            name, raw = body, argv[i + 1]
            i += 1
        else:
            name, raw = body, "true"
        pairs.append((name.replace("-", "_"), raw))
        i += 1
    return pairs, rest


def parse_overrides(argv):
    """['--a.b=1', '--c', 'x', '--flag'] -> [('a.b', '1'), ('c', 'x'), ('flag', 'true')]."""
    pairs, rest = split_arguments(argv)
    if rest:
        raise ConfigError(f"unexpected argument '{rest[0]}': options look like --key=value")
    return pairs


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            detail = " ".join(str(err).split())
            raise ConfigError(f"config file {path} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    return data


def _inside_repo(path):
    return os.path.commonpath([REPO, os.path.abspath(path)]) == REPO


def resolve_paths(flat, origins, cwd):
    """Make the PATH_KEYS values absolute: repository values against REPO, user values against cwd."""
    for key in PATH_KEYS:
        base = REPO if origins.get(key) == "repo" else cwd
        value = flat[key]
        if isinstance(value, list):
            flat[key] = [os.path.join(base, os.path.expanduser(v)) for v in value]
        elif value and not (key == "train.resume" and value == "auto"):
            flat[key] = os.path.join(base, os.path.expanduser(value))


def _check_value(key, value):
    """Raise ConfigError unless `value` is allowed for `key` (CHOICES, RANGES)."""
    allowed = CHOICES.get(key)
    if allowed is not None and value not in allowed:
        shown = ", ".join(repr(a) if a == "" else a for a in allowed)
        raise ConfigError(f"config key '{key}' must be one of {shown}; got {value!r}")
    if key in RANGES:
        low, high, open_low = RANGES[key]
        too_low = value <= low if open_low else value < low
        too_high = high is not None and value >= high
        if too_low or too_high:
            bound = f"> {low}" if open_low else f">= {low}"
            if high is not None:
                bound += f" and < {high}"
            raise ConfigError(f"config key '{key}' must be {bound}; got {value!r}")


def check_device_options(cfg):
    """Reject training switches the chosen device cannot run, with the reason, before any work."""
    amp, jit, device = cfg.train.amp_level, cfg.train.jit_level, cfg.device_target
    if amp != "O0" and device == "CPU":
        raise ConfigError(f"train.amp_level={amp} needs GPU or Ascend: MindSpore's float16 CPU "
                          "kernels are slower than float32 and the CPU conv fast path computes in "
                          "float32; use --amp_level=O0 on CPU")
    if jit == "O2" and device != "Ascend":
        raise ConfigError("train.jit_level=O2 (whole-graph sink through GraphEngine) runs on "
                          f"Ascend only, not {device}; use '', O0 or O1")
    if jit and cfg.mode != "graph":
        raise ConfigError(f"train.jit_level={jit} applies to graph mode; set --mode=graph")


def check_decode_options(cfg):
    """decode.*: a registered method (src.decoder.DECODERS), finite numbers, no setting that the
    method would ignore, and the method's own checks (an LM and hotwords the labels can spell)."""
    import math

    from src.decoder import DECODERS
    from src.text import load_labels
    decode = cfg.decode
    method = "beam" if cfg.entry == "tune_lm" else decode.method  # tune_lm: always beam
    if method not in DECODERS:
        raise ConfigError(f"config key 'decode.method' must be one of {', '.join(DECODERS)}; "
                          f"got {method!r}")
    for key, value in decode.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key 'decode.{key}' must be a finite number; got {value}")
    if cfg.entry == "serve":
        allowed = cfg.serve.decode_methods
        unknown = [m for m in allowed if m not in DECODERS]
        if unknown or method not in allowed:
            raise ConfigError(f"serve.decode_methods {allowed} must list methods of "
                              f"{', '.join(DECODERS)}, decode.method ({method}) among them")
    cls = DECODERS[method]
    for key, value in decode.items():  # a file or words set for nothing: the user expects them used
        if isinstance(value, (str, list)) and value and key != "method" and key not in cls.keys:
            users = " or ".join(m for m, c in DECODERS.items() if key in c.keys)
            raise ConfigError(f"decode.{key} is set ({value}) but decode.method is {method}: add "
                              f"--decode.method={users} to use it")
    cls.check(cls.settings(decode), load_labels(cfg.labels_path))


def check_sections(cfg):
    """The section checks that import NumPy-based modules (augmentation, decoder and LM):
    called by load_config, or by src.cli after prepare_environment (load_config(checks=False))."""
    if cfg.entry == "train":
        from src.augment import check_augment
        check_augment(cfg.augment)
    check_decode_options(cfg)


def load_config(argv=(), entry="train", default_path=DEFAULT_CONFIG, cwd=None,
                checks=True):
    """Defaults <- optional --config_path YAML <- overrides, checked. Returns a nested EasyDict.

    Every value is checked against CHOICES and RANGES; for entry "train" also the device
    switches (check_device_options). Paths come back absolute (see the module docstring).
    checks=False leaves the checks that import NumPy (check_sections) to the caller.
    """
    cwd = os.getcwd() if cwd is None else cwd
    flat = _flatten(_read_yaml(default_path))
    origins = dict.fromkeys(flat, "repo")
    pairs = parse_overrides(list(argv))
    config_files = [os.path.join(cwd, raw) for name, raw in pairs if name == "config_path"]
    for path in config_files:
        origin = "repo" if _inside_repo(path) else "user"
        for key, value in _flatten(_read_yaml(path)).items():
            if key not in flat:
                raise ConfigError(f"unknown config key '{key}' in {path}")
            flat[key], origins[key] = _coerce(key, value, flat[key]), origin
    for name, raw in pairs:
        if name == "config_path":
            continue
        key = _resolve(name, flat, entry)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        flat[key], origins[key] = _coerce(key, value, flat[key]), "user"
    for key, value in flat.items():
        _check_value(key, value)
    resolve_paths(flat, origins, cwd)
    tree = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    cfg = EasyDict(tree)
    cfg.config_files = config_files
    cfg.entry = entry
    if entry == "train":
        check_device_options(cfg)
    if checks:
        check_sections(cfg)
    return cfg


def keys_help(default_path=DEFAULT_CONFIG):
    """Every config section and key with its default and comment (for --help): the default
    YAML itself, below its header comment."""
    with open(default_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line and not line.startswith("#")):]
    return ("Config keys and defaults (src/default_config.yaml); override any with "
            "--section.key=value or --key=value:\n\n" + "\n".join(body))


def to_dict(cfg):
    """Plain nested dict (for logging / JSON)."""
    return {k: to_dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
