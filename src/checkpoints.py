"""Checkpoints: reading with clear errors, strict loading, atomic saving, rotation, resume."""
import glob
import json
import os
import re

import mindspore as ms
import numpy as np

from src.deepspeech2 import build_network, infer_model_size
from src.errors import UserError
from src.train_step import LOSS_SCALE_STATE

CKPT_PREFIX = "DeepSpeech"
# Non-network entries a training checkpoint may hold (optimizer state, bookkeeping).
OPTIMIZER_PREFIXES = ("moment1.", "moment2.", "global_step", "learning_rate", "beta1_power",
                      "beta2_power", "epoch_num", "step_num", "loss_scale", "scale_sense",
                      "current_iterator_step", "last_overflow_iterator_step",
                      "feature_settings")
FEATURES_KEY = "feature_settings"  # JSON of FEATURE_KEYS: what the weights expect as input
FEATURE_KEYS = ("sample_rate", "window_size", "window_stride", "window", "normalize")


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or of another architecture."""


def read_checkpoint(path):
    """Parameter dict of a checkpoint file, with clear errors."""
    if not path:
        raise CheckpointError("no checkpoint given")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None


def network_params(param_dict):
    """The network's own entries of a checkpoint (optimizer state removed)."""
    return {k: v for k, v in param_dict.items() if not k.startswith(OPTIMIZER_PREFIXES)}


def feature_settings(feature_cfg):
    """The checkpoint entry recording the feature settings the weights were trained on."""
    return {FEATURES_KEY: json.dumps({k: feature_cfg[k] for k in FEATURE_KEYS}, sort_keys=True)}


def check_features(param_dict, feature_cfg, source):
    """CheckpointError when the checkpoint records feature settings other than `feature_cfg`
    (a model fed other features decodes garbage, or fails with a shape error far from the
    cause). Checkpoints without the record (the model zoo's, older ones) are not checked."""
    stored = param_dict.get(FEATURES_KEY)
    if stored is None:
        return
    stored = json.loads(stored)
    diffs = [k for k in FEATURE_KEYS if k in stored and stored[k] != feature_cfg[k]]
    if diffs:
        theirs = " ".join(f"--features.{k}={stored[k]}" for k in diffs)
        ours = ", ".join(f"{k}={feature_cfg[k]}" for k in diffs)
        raise CheckpointError(f"{source} was trained on other features than this run's ({ours}): "
                              f"run with the checkpoint's settings: {theirs}")


def save_network(cell, path, feature_cfg=None, extra=None):
    """Atomically write `cell`'s parameters, the feature settings (when given) and `extra`
    entries ({name: number or str}) to `path`."""
    append = feature_settings(feature_cfg) if feature_cfg is not None else {}
    append.update(extra or {})
    atomic_save(lambda tmp: ms.save_checkpoint(cell, tmp, append_dict=append or None), path)


def load_weights(network, param_dict, source="checkpoint"):
    """Load strictly: every network parameter present with its shape, nothing unexpected."""
    params = network_params(param_dict)
    expected = {p.name: tuple(p.shape) for p in network.get_parameters()}
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    wrong = [f"{k} {tuple(params[k].shape)} (network: {expected[k]})"
             for k in sorted(set(expected) & set(params)) if tuple(params[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}")
    if wrong:
        problems.append(f"shape mismatch {len(wrong)}: {'; '.join(wrong[:5])}")
    if missing == ["fc.module.bias"] and not unexpected and not wrong:
        problems.append("it was trained without an output bias: add --blank_bias=0")
    elif unexpected == ["fc.module.bias"] and not missing and not wrong:
        problems.append("it was trained with an output bias: add --blank_bias=4")
    if problems:
        raise CheckpointError(f"{source} does not fit this network: {' | '.join(problems)}")
    ms.load_param_into_net(network, params, strict_load=True)


def network_from_checkpoint(cfg, path, log=print, recorded_features=False, **build_options):
    """Network sized as the checkpoint says (hidden, layers, direction, lookahead), its weights loaded;
    `build_options` go to build_network (fast_conv, onnx). Refuses other feature settings, or
    with `recorded_features` puts the checkpoint's recorded ones into cfg.features (a copy the
    caller owns; serve.py runs a streaming and a bidirectional checkpoint side by side)."""
    param_dict = read_checkpoint(path)
    if recorded_features and FEATURES_KEY in param_dict:
        cfg.features.update(json.loads(param_dict[FEATURES_KEY]))
    try:
        hidden, layers, bidirectional, lookahead, bias = infer_model_size(
            network_params(param_dict))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if (hidden, layers, bidirectional, lookahead) != (
            cfg.model.hidden_size, cfg.model.num_layers, cfg.model.bidirectional,
            cfg.model.lookahead):
        log(f"checkpoint {path} holds hidden_size={hidden}, num_layers={layers}, "
            f"bidirectional={bidirectional}, lookahead={lookahead}; using that instead of the "
            "config's")
    check_features(param_dict, cfg.features, path)
    network = build_network(cfg, hidden, layers, bidirectional, lookahead=lookahead,
                            output_bias=bias, **build_options)
    load_weights(network, param_dict, source=path)
    return network


def checkpoint_name(epoch, step_in_epoch, weights_only=False):
    """The zoo's names: DeepSpeech-<epoch>_<step in epoch>.ckpt (+ _weights for weights only)."""
    return f"{CKPT_PREFIX}-{epoch}_{step_in_epoch}{'_weights' if weights_only else ''}.ckpt"


def file_mode():
    """The mode a new file gets under the process umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_save(save, path, suffix=".ckpt"):
    """save(tmp) then fsync and rename: a kill leaves either the old file set or the new one.
    The file gets the usual mode (MindSpore writes checkpoints and MindIR read-only, 0400)."""
    folder = os.path.dirname(os.path.abspath(path))
    # ends in `suffix`: MindSpore would append it otherwise
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}{suffix}")
    save(tmp)
    os.chmod(tmp, file_mode())
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def list_checkpoints(ckpt_dir):
    """Full (resumable) checkpoints in ckpt_dir as [(global order key, path)], oldest first."""
    found = []
    for path in glob.glob(os.path.join(ckpt_dir, f"{CKPT_PREFIX}-*_*.ckpt")):
        match = re.search(rf"{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$", path)
        if match:
            found.append(((int(match.group(1)), int(match.group(2))), path))
    return sorted(found)


def save_checkpoint(train_step, network, ckpt_dir, epoch, step_in_epoch, global_step,
                    weights_copy, run_folder=None, keep_max=0, feature_cfg=None):
    """Write a full checkpoint (weights, Adam moments, position, feature settings) and
    optionally a weights-only copy, atomically. With `run_folder` (src.run_folder.RunFolder)
    the checkpoint is recorded as the run's and only the run's own older checkpoints beyond the
    newest `keep_max` (0 = all kept) are removed. Returns the full checkpoint path."""
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, checkpoint_name(epoch, step_in_epoch))
    position = {"epoch_num": epoch, "step_num": global_step}
    save_network(train_step, path, feature_cfg, position)
    if weights_copy:
        weights = os.path.join(ckpt_dir, checkpoint_name(epoch, step_in_epoch, True))
        save_network(network, weights, feature_cfg)
    if run_folder is not None:
        run_folder.add(path)
        for old in run_folder.stale(keep_max):
            for stale in (old, old[:-len(".ckpt")] + "_weights.ckpt"):
                if os.path.exists(stale):
                    os.remove(stale)
    return path


def average_checkpoints(paths, out):
    """Write the mean of the network parameters of `paths` (BatchNorm statistics included,
    optimizer state dropped) to `out` as a weights-only checkpoint; all must have one shape."""
    total, shapes, record = None, None, {}
    for path in paths:
        raw = read_checkpoint(path)
        if FEATURES_KEY in raw:
            if record and record[FEATURES_KEY] != raw[FEATURES_KEY]:
                raise CheckpointError(f"{path} was trained on other features than {paths[0]}")
            record = {FEATURES_KEY: raw[FEATURES_KEY]}
        params = {k: v.asnumpy().astype(np.float64) for k, v in network_params(raw).items()}
        layout = {k: v.shape for k, v in params.items()}
        if total is None:
            total, shapes = params, layout
            continue
        if layout != shapes:
            raise CheckpointError(f"{path} does not have the parameters of {paths[0]}")
        for k, v in params.items():
            total[k] += v
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    mean = [{"name": k, "data": ms.Tensor((v / len(paths)).astype(np.float32))}
            for k, v in total.items()]
    save_network(mean, out, extra=record)
    return out


def run_checkpoints(folder):
    """Full checkpoints of the run recorded in `folder` (src.run_folder), oldest first; for a
    folder written before runs were recorded, every full checkpoint in it."""
    from src.run_folder import RunFolder
    recorded = RunFolder.read(folder)
    if recorded is not None:
        return [path for path in recorded.checkpoints if os.path.isfile(path)]
    return [path for _, path in list_checkpoints(folder)]


def find_resume_checkpoint(resume, ckpt_dir, log):
    """The checkpoint to resume from: `resume` itself (a file), or the newest readable full
    checkpoint of the run in `resume` (a folder) or, for "auto", in ckpt_dir. None when there
    is none."""
    if os.path.isfile(resume):
        return resume
    folder = ckpt_dir if resume == "auto" else resume
    if resume != "auto" and not os.path.isdir(folder):
        raise CheckpointError(f"--resume: no checkpoint file or folder {resume}")
    for path in reversed(run_checkpoints(folder)):
        try:
            ms.load_checkpoint(path)
            return path
        except (ValueError, RuntimeError) as err:
            log(f"skipping unreadable checkpoint {path}: {err}")
    return None


def restore(train_step, path, log=print, feature_cfg=None):
    """Load a full checkpoint into the train step; returns the global step it was written at.
    With `feature_cfg`, a checkpoint trained on other feature settings is refused.

    A checkpoint without loss-scale state (written by an unscaled step, the CPU default) resumes
    into a loss-scaled step (the GPU/Ascend default) with that state started fresh, which `log`
    says.
    """
    params = read_checkpoint(path)
    if feature_cfg is not None:
        check_features(params, feature_cfg, path)
    if "step_num" not in params:
        raise CheckpointError(f"{path} has no training position (a weights-only checkpoint?): "
                              "use it with --pre_trained_model_path instead of --resume")
    step = int(params.pop("step_num").asnumpy())
    params.pop(FEATURES_KEY, None)
    params.pop("epoch_num", None)
    params.pop("learning_rate", None)  # the schedule comes from the config
    missing, _ = ms.load_param_into_net(train_step, params)
    missing = [m for m in missing if m != "learning_rate"]
    fresh = [m for m in missing if m in LOSS_SCALE_STATE]
    if fresh:
        log(f"{path} holds no loss-scale state (written by an unscaled step, as on CPU): the "
            f"dynamic loss scale starts fresh ({', '.join(fresh)})")
        missing = [m for m in missing if m not in LOSS_SCALE_STATE]
    if missing:
        raise CheckpointError(f"{path} does not fit this run: missing {', '.join(missing[:5])}")
    return step
