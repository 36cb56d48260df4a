"""The training run behind train.py: data, network, optimizer, loop, checkpoints, metrics."""
import glob
import json
import logging
import os
import re
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import nn
from tqdm import tqdm

from src.builders import (CheckpointError, ScaledTrainStep, TrainStep, build_network,
                          load_weights, read_checkpoint)
from src.config import to_dict
from src.dataset import create_dataset, iterate, load_utterances, make_encoder, training_source
from src.deepspeech2 import CTCLossCell, InferenceNet
from src.evaluate import evaluate_manifest
from src.lr_generator import get_lr

CKPT_PREFIX = "DeepSpeech"


def setup_logger(log_dir, rank=0, name="deepspeech2"):
    """Logger to <log_dir>/train.log (rank r > 0: train_rank<r>.log) and stderr."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, "train.log" if rank == 0 else f"train_rank{rank}.log")
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in (logging.FileHandler(path, mode="a"), logging.StreamHandler()):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger, path


def build_optimizer(network, cfg, lr):
    """Adam on the schedule `lr` (one value per step); weight decay skips BatchNorm and biases."""
    params = network.trainable_params()
    decay = [p for p in params if p.name.endswith("weight") or "weight_" in p.name]
    others = [p for p in params if not any(p is q for q in decay)]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay},
              {"params": others, "weight_decay": 0.0}]
    return nn.Adam(groups, learning_rate=ms.Tensor(lr), beta1=cfg.train.beta1,
                   beta2=cfg.train.beta2, eps=cfg.train.eps)


def build_train_step(network, optimizer, cfg, blank):
    """TrainStep (CPU, or loss_scale none), else ScaledTrainStep with dynamic loss scaling.

    train.amp_level casts the network for mixed precision (GPU/Ascend; the loss stays float32)
    and train.jit_level sets the step's graph compile level; check_device_options has vetted both.
    """
    if cfg.train.loss_scale not in ("dynamic", "none"):
        raise ValueError(f"train.loss_scale must be 'dynamic' or 'none', got "
                         f"'{cfg.train.loss_scale}'")
    if cfg.train.amp_level != "O0":
        network = ms.amp.auto_mixed_precision(network, cfg.train.amp_level)
    loss_net = CTCLossCell(network, blank)
    if cfg.device_target != "CPU" and cfg.train.loss_scale == "dynamic":
        step = ScaledTrainStep(loss_net, optimizer, cfg.train.max_grad_norm)
    else:
        step = TrainStep(loss_net, optimizer, cfg.train.max_grad_norm)
    if cfg.train.jit_level:
        step.set_jit_config(ms.JitConfig(jit_level=cfg.train.jit_level))
    return step


def checkpoint_name(epoch, step_in_epoch, weights_only=False):
    """The zoo's names: DeepSpeech-<epoch>_<step in epoch>.ckpt (+ _weights for weights only)."""
    return f"{CKPT_PREFIX}-{epoch}_{step_in_epoch}{'_weights' if weights_only else ''}.ckpt"


def _atomic_save(save, path):
    """save(tmp) then fsync and rename: a kill leaves either the old file set or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}.ckpt")  # MindSpore adds .ckpt otherwise
    save(tmp)
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


def save_checkpoint(train_step, network, ckpt_dir, epoch, step_in_epoch, global_step, keep_max,
                    weights_copy):
    """Write a full checkpoint (weights, Adam moments, position) and optionally a weights-only
    copy, atomically; keep the newest `keep_max` of each kind. Returns the full checkpoint path."""
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, checkpoint_name(epoch, step_in_epoch))
    position = {"epoch_num": epoch, "step_num": global_step}
    _atomic_save(lambda tmp: ms.save_checkpoint(train_step, tmp, append_dict=position), path)
    if weights_copy:
        weights = os.path.join(ckpt_dir, checkpoint_name(epoch, step_in_epoch, True))
        _atomic_save(lambda tmp: ms.save_checkpoint(network, tmp), weights)
    if keep_max > 0:
        for _, old in list_checkpoints(ckpt_dir)[:-keep_max]:
            for stale in (old, old[:-len(".ckpt")] + "_weights.ckpt"):
                if os.path.exists(stale):
                    os.chmod(stale, 0o600)  # MindSpore writes checkpoints read-only
                    os.remove(stale)
    return path


def find_resume_checkpoint(resume, ckpt_dir, log):
    """The checkpoint to resume from: `resume` itself (a file), or the newest readable full
    checkpoint in `resume` (a folder) or, for "auto", in ckpt_dir. None when there is none."""
    if os.path.isfile(resume):
        return resume
    folder = ckpt_dir if resume == "auto" else resume
    if resume != "auto" and not os.path.isdir(folder):
        raise CheckpointError(f"--resume: no checkpoint file or folder {resume}")
    for _, path in reversed(list_checkpoints(folder)):
        try:
            ms.load_checkpoint(path)
            return path
        except (ValueError, RuntimeError) as err:
            log(f"skipping unreadable checkpoint {path}: {err}")
    return None


def truncate_metrics(path, last_step):
    """Drop metrics lines after `last_step` (they are redone after a resume)."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and json.loads(line)["step"] <= last_step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def restore(train_step, path):
    """Load a full checkpoint into the train step; returns the global step it was written at."""
    params = read_checkpoint(path)
    if "step_num" not in params:
        raise CheckpointError(f"{path} has no training position (a weights-only checkpoint?): "
                              "use it with --pre_trained_model_path instead of --resume")
    step = int(params.pop("step_num").asnumpy())
    params.pop("epoch_num", None)
    params.pop("learning_rate", None)  # the schedule comes from the config
    missing, _ = ms.load_param_into_net(train_step, params)
    missing = [m for m in missing if m != "learning_rate"]
    if missing:
        raise CheckpointError(f"{path} does not fit this run: missing {', '.join(missing[:5])}")
    return step


class BadStepGuard:
    """Counts steps whose loss or gradients were not finite (their update was skipped)."""

    def __init__(self, limit, logger):
        self.limit, self.logger = limit, logger
        self.total = self.run = 0

    def update(self, ok, step, utterances):
        """`utterances`: a callable giving the batch's utterances (only called for a bad step)."""
        if ok:
            self.run = 0
            return
        self.total += 1
        self.run += 1
        names = ", ".join(os.path.basename(u.audio) for u in utterances())
        self.logger.warning("step %d: non-finite loss or gradient, update skipped (%d so far); "
                            "batch: %s", step, self.total, names)
        if self.limit and self.run >= self.limit:
            raise FloatingPointError(
                f"{self.run} consecutive steps had a non-finite loss or gradient; likely causes: "
                "a learning rate too high (lower train.learning_rate), transcripts longer than "
                "their audio allows, or corrupt audio in the batches logged above")


def run_training(cfg, rank=0, group_size=1):
    """Train as configured; returns the path of the last checkpoint written."""
    logger, log_path = setup_logger(cfg.train.log_dir, rank)
    logger.info("log file: %s (rank %d of %d)", os.path.abspath(log_path), rank, group_size)
    logger.info("config: %s", json.dumps(to_dict(cfg)))
    encoder = make_encoder(cfg)

    utts, report = load_utterances(cfg.data.train_manifest, cfg, encoder,
                                   max_duration=cfg.data.max_duration)
    logger.info("train manifest %s: %d utterances, %.2f h; skipped: %s",
                cfg.data.train_manifest, len(utts),
                sum(u.frames for u in utts) * cfg.features.window_stride / 3600, report.text())
    for line in report.files:
        logger.warning("skipped: %s", line)
    if encoder.dropped:
        logger.warning("characters dropped from transcripts: %s", dict(encoder.dropped))
    source = training_source(utts, cfg, rank, group_size)
    spe = source.steps_per_epoch
    logger.info("%d steps/epoch, %d padded lengths %s, padding %.1f%% of frames",
                spe, len(set(source.pad.tolist())), sorted(set(source.pad.tolist())),
                100 * source.padding_fraction)

    network = build_network(cfg)
    if cfg.train.pre_trained_model_path:
        load_weights(network, read_checkpoint(cfg.train.pre_trained_model_path),
                     source=cfg.train.pre_trained_model_path)
        logger.info("weights loaded from %s", cfg.train.pre_trained_model_path)
    lr_init = cfg.train.learning_rate
    if group_size > 1 and cfg.train.lr_scaling == "linear":
        lr_init *= group_size  # the global batch is group_size x batch_size
        logger.info("learning rate scaled to %g for %d devices", lr_init, group_size)
    elif cfg.train.lr_scaling not in ("linear", "none"):
        raise ValueError(f"train.lr_scaling must be 'linear' or 'none', got '{cfg.train.lr_scaling}'")
    lr = get_lr(lr_init, cfg.train.epochs, spe,
                cfg.train.warmup_steps, cfg.train.hold_epochs, cfg.train.lr_anneal)
    optimizer = build_optimizer(network, cfg, lr)
    train_step = build_train_step(network, optimizer, cfg, encoder.blank_id)
    train_step.set_train(True)
    infer_net = InferenceNet(network)

    # Only rank 0 keeps metrics; the other ranks' progress is in their own log files.
    metrics_path = os.path.join(cfg.train.log_dir, "metrics.jsonl") if rank == 0 else os.devnull
    start = 0
    if cfg.train.resume:
        path = find_resume_checkpoint(cfg.train.resume, cfg.train.checkpoint_dir, logger.warning)
        if path is None:
            logger.info("resume: no checkpoint in %s yet, starting from scratch",
                        cfg.train.checkpoint_dir)
        else:
            start = restore(train_step, path)
            logger.info("resumed from %s at step %d (epoch %d, step %d of it)", path, start,
                        start // spe + 1, start % spe)
    if rank == 0:
        truncate_metrics(metrics_path, start)
    total = cfg.train.epochs * spe
    data = create_dataset(source, cfg.data.num_parallel_workers, start_step=start)
    iterator = iterate(data)
    guard = BadStepGuard(cfg.train.max_bad_steps, logger)
    last_ckpt, bar = None, None
    with open(metrics_path, "a", encoding="utf-8") as metrics:
        logger.info("metrics: %s", os.path.abspath(metrics_path))
        window_loss, window_utts, window_t0 = [], 0, time.perf_counter()
        for step in range(start, total):
            epoch, k = divmod(step, spe)
            if bar is None:
                bar = tqdm(total=spe, initial=k, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           unit="step", dynamic_ncols=True, disable=rank != 0,
                           mininterval=0.1 if sys.stderr.isatty() else 10)  # short logs
            inputs, lengths, targets, target_lengths = next(iterator)
            loss, ok = train_step(inputs, lengths, targets, target_lengths)[:2]
            loss = float(loss.asnumpy())
            ok = bool(ok.asnumpy())
            guard.update(ok, step + 1, lambda: source.batch_utterances(step))
            done = step + 1
            if ok:
                window_loss.append(loss)
            window_utts += inputs.shape[0]
            utt_s = window_utts / max(time.perf_counter() - window_t0, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr[step]:.2e}", utt_s=f"{utt_s:.1f}")
            if done % cfg.train.log_interval == 0 or done % spe == 0:
                record = {"step": done, "epoch": epoch + 1,
                          "loss": float(np.mean(window_loss)) if window_loss else None,
                          "lr": float(lr[step]), "utt_per_s": round(utt_s, 3)}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                window_loss, window_utts, window_t0 = [], 0, time.perf_counter()
            epoch_end = done % spe == 0
            save = (cfg.train.save_checkpoint_steps and done % cfg.train.save_checkpoint_steps == 0)
            if epoch_end:
                bar.close()
                bar = None
                logger.info("epoch %d done: step %d, last loss %.4f", epoch + 1, done, loss)
                save = save or (epoch + 1) % cfg.train.save_checkpoint_epochs == 0 \
                    or done == total
            if save and rank == 0:
                last_ckpt = save_checkpoint(train_step, network, cfg.train.checkpoint_dir,
                                            epoch + 1, k + 1, done, cfg.train.keep_checkpoint_max,
                                            cfg.train.save_weights_only)
                logger.info("checkpoint: %s", os.path.abspath(last_ckpt))
            if epoch_end and cfg.data.val_manifest and rank == 0:
                rates, _, _ = evaluate_manifest(infer_net, cfg.data.val_manifest, cfg, encoder,
                                                cfg.data.batch_size, desc="validation")
                network.set_train(True)
                logger.info("epoch %d validation: WER %.2f%% CER %.2f%% (%d utterances)",
                            epoch + 1, rates.wer, rates.cer, rates.utterances)
                metrics.write(json.dumps({"step": done, "epoch": epoch + 1, "val_wer": rates.wer,
                                          "val_cer": rates.cer}) + "\n")
                metrics.flush()
    if guard.total:
        logger.warning("%d steps were skipped for non-finite values", guard.total)
    return last_ckpt
