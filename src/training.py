"""The training run behind train.py: data, network, optimizer, loop, checkpoints, metrics."""
import glob
import json
import logging
import os
import re
import time

import mindspore as ms
import numpy as np
from mindspore import nn
from tqdm import tqdm

from src.builders import (ScaledTrainStep, TrainStep, build_network, load_weights,
                          read_checkpoint)
from src.config import to_dict
from src.dataset import BatchSource, create_dataset, load_utterances, make_encoder
from src.deepspeech2 import CTCLossCell, InferenceNet
from src.evaluate import evaluate_manifest
from src.lr_generator import get_lr

CKPT_PREFIX = "DeepSpeech"


def setup_logger(log_dir, name="deepspeech2"):
    """Logger to <log_dir>/train.log and stderr; returns (logger, log path)."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, "train.log")
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
    """TrainStep (CPU, or loss_scale none), else ScaledTrainStep with dynamic loss scaling."""
    loss_net = CTCLossCell(network, blank)
    if cfg.device_target != "CPU" and cfg.train.loss_scale == "dynamic":
        return ScaledTrainStep(loss_net, optimizer, cfg.train.max_grad_norm)
    if cfg.train.loss_scale not in ("dynamic", "none"):
        raise ValueError(f"train.loss_scale must be 'dynamic' or 'none', got "
                         f"'{cfg.train.loss_scale}'")
    return TrainStep(loss_net, optimizer, cfg.train.max_grad_norm)


def save_checkpoint(train_step, ckpt_dir, epoch, step_in_epoch, keep_max):
    """DeepSpeech-<epoch>_<step>.ckpt (the zoo's names), keeping the newest `keep_max`."""
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, f"{CKPT_PREFIX}-{epoch}_{step_in_epoch}.ckpt")
    ms.save_checkpoint(train_step, path)
    existing = sorted(glob.glob(os.path.join(ckpt_dir, f"{CKPT_PREFIX}-*_*.ckpt")),
                      key=os.path.getmtime)
    for old in existing[:-keep_max] if keep_max > 0 else []:
        os.chmod(old, 0o600)  # MindSpore writes checkpoints read-only
        os.remove(old)
    return path


def checkpoint_epoch(path):
    """Epoch number in a DeepSpeech-<epoch>_<step>.ckpt name."""
    match = re.search(rf"{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$", path)
    return int(match.group(1)) if match else None


def run_training(cfg, rank=0, group_size=1):
    """Train as configured; returns the path of the last checkpoint written."""
    logger, log_path = setup_logger(cfg.train.log_dir)
    logger.info("log file: %s", os.path.abspath(log_path))
    logger.info("config: %s", json.dumps(to_dict(cfg)))
    encoder = make_encoder(cfg)

    utts, report = load_utterances(cfg.data.train_manifest, cfg, encoder,
                                   max_duration=cfg.data.max_duration)
    logger.info("train manifest %s: %d utterances, %.2f h; skipped: %s",
                cfg.data.train_manifest, len(utts),
                sum(u.frames for u in utts) * cfg.features.window_stride / 3600, report.text())
    if encoder.dropped:
        logger.warning("characters dropped from transcripts: %s", dict(encoder.dropped))
    source = BatchSource(utts, cfg, cfg.data.batch_size, cfg.data.num_buckets,
                         epochs=cfg.train.epochs, shuffle=True, seed=cfg.seed,
                         rank=rank, group_size=group_size)
    steps_per_epoch = source.steps_per_epoch
    logger.info("%d steps/epoch, %d padded lengths %s, padding %.1f%% of frames",
                steps_per_epoch, len(set(source.pad.tolist())), sorted(set(source.pad.tolist())),
                100 * source.padding_fraction)

    network = build_network(cfg)
    if cfg.train.pre_trained_model_path:
        load_weights(network, read_checkpoint(cfg.train.pre_trained_model_path),
                     source=cfg.train.pre_trained_model_path)
        logger.info("weights loaded from %s", cfg.train.pre_trained_model_path)
    lr = get_lr(cfg.train.learning_rate, cfg.train.epochs, steps_per_epoch,
                cfg.train.warmup_steps, cfg.train.hold_epochs, cfg.train.lr_anneal)
    optimizer = build_optimizer(network, cfg, lr)
    train_step = build_train_step(network, optimizer, cfg, encoder.blank_id)
    train_step.set_train(True)
    infer_net = InferenceNet(network)

    data = create_dataset(source, cfg.data.num_parallel_workers)
    iterator = data.create_tuple_iterator(num_epochs=1)
    metrics_path = os.path.join(cfg.train.log_dir, "metrics.jsonl")
    last_ckpt = None
    step = 0
    with open(metrics_path, "a", encoding="utf-8") as metrics:
        logger.info("metrics: %s", os.path.abspath(metrics_path))
        for epoch in range(cfg.train.epochs):
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                       unit="step", dynamic_ncols=True)
            window_loss, window_utts, window_t0 = [], 0, time.perf_counter()
            for _ in bar:
                inputs, lengths, targets, target_lengths = next(iterator)
                out = train_step(inputs, lengths, targets, target_lengths)
                loss = float((out[0] if isinstance(out, tuple) else out).asnumpy())
                step += 1
                window_loss.append(loss)
                window_utts += inputs.shape[0]
                elapsed = time.perf_counter() - window_t0
                utt_s = window_utts / max(elapsed, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr[step - 1]:.2e}",
                                utt_s=f"{utt_s:.1f}")
                if step % cfg.train.log_interval == 0 or step % steps_per_epoch == 0:
                    record = {"step": step, "epoch": epoch + 1, "loss": float(np.mean(window_loss)),
                              "lr": float(lr[step - 1]), "utt_per_s": round(utt_s, 3)}
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    window_loss, window_utts, window_t0 = [], 0, time.perf_counter()
            bar.close()
            logger.info("epoch %d done: step %d, last loss %.4f", epoch + 1, step, loss)
            if (epoch + 1) % cfg.train.save_checkpoint_epochs == 0 or epoch + 1 == cfg.train.epochs:
                if rank == 0:
                    last_ckpt = save_checkpoint(train_step, cfg.train.checkpoint_dir, epoch + 1,
                                                steps_per_epoch, cfg.train.keep_checkpoint_max)
                    logger.info("checkpoint: %s", os.path.abspath(last_ckpt))
            if cfg.data.val_manifest and rank == 0:
                rates, _ = evaluate_manifest(infer_net, cfg.data.val_manifest, cfg, encoder,
                                             cfg.data.batch_size, desc="validation")
                network.set_train(True)
                logger.info("epoch %d validation: WER %.2f%% CER %.2f%% (%d utterances)",
                            epoch + 1, rates.wer, rates.cer, rates.utterances)
                metrics.write(json.dumps({"step": step, "epoch": epoch + 1, "val_wer": rates.wer,
                                          "val_cer": rates.cer}) + "\n")
                metrics.flush()
    return last_ckpt
