"""One source of configuration: a YAML default, an optional YAML file, then command-line overrides.

    cfg = load_config(argv, entry="train")

Command-line forms (all equivalent): `--train.lr=1e-3`, `--train.lr 1e-3`, `--lr=1e-3` (a leaf
name is accepted when it is unique, the entry point's own section winning). `--config_path F`
merges the YAML file F over the defaults first. Unknown keys and values of the wrong type are
errors (ConfigError, one line naming the key). Flag names of the model zoo are accepted as
aliases (ALIASES). Nothing here runs at import time.
"""
import os

import yaml
from easydict import EasyDict

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.yaml")

# Zoo flag names -> keys of this repo, per entry point.
ALIASES = {
    "train": {"pre_trained_model_path": "train.pre_trained_model_path"},
    "eval": {"pretrain_ckpt": "eval.checkpoint", "pre_trained_model_path": "eval.checkpoint"},
    "export": {"pre_trained_model_path": "export.checkpoint"},
}


class ConfigError(ValueError):
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
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
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


def parse_overrides(argv):
    """['--a.b=1', '--c', 'x', '--flag'] -> [('a.b', '1'), ('c', 'x'), ('flag', 'true')]."""
    pairs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument '{arg}': options look like --key=value")
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


def load_config(argv=(), entry="train", default_path=DEFAULT_CONFIG):
    """Defaults <- optional --config_path YAML <- overrides. Returns a nested EasyDict."""
    flat = _flatten(_read_yaml(default_path))
    pairs = parse_overrides(list(argv))
    config_files = [raw for name, raw in pairs if name == "config_path"]
    for path in config_files:
        for key, value in _flatten(_read_yaml(path)).items():
            if key not in flat:
                raise ConfigError(f"unknown config key '{key}' in {path}")
            flat[key] = _coerce(key, value, flat[key])
    for name, raw in pairs:
        if name == "config_path":
            continue
        key = _resolve(name, flat, entry)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        flat[key] = _coerce(key, value, flat[key])
    tree = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    cfg = EasyDict(tree)
    cfg.config_files = config_files
    return cfg


def to_dict(cfg):
    """Plain nested dict (for logging / JSON)."""
    return {k: to_dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
