"""The training run behind train.py: setup, then a loop of small named steps.

    run = setup_run(cfg, rank, group_size)   # data, network, optimizer, resume position
    for each step: batch -> train step -> metrics -> (epoch end) -> checkpoint -> validation
"""
import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from src.augment import AugmentError
from src.best import BEST_CKPT, BestTracker
from src.checkpoints import (
    check_features,
    checkpoint_name,
    find_resume_checkpoint,
    list_checkpoints,
    load_weights,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from src.config import to_dict
from src.curves import plot_curves
from src.dataset import FirstUse, create_dataset, iterate, load_utterances, training_source
from src.decoder import decoder_pools
from src.deepspeech2 import InferenceNet, build_network
from src.errors import UserError
from src.evaluate import evaluate_manifest
from src.features import global_stats
from src.freeze import freeze
from src.lr_generator import get_lr
from src.progress import progress
from src.run_folder import RunFolder
from src.run_metrics import METRICS, MetricsLog
from src.text import make_encoder
from src.train_step import AccumulatingStep, build_optimizer, build_train_step


class TrainingDiverged(UserError):
    """Too many consecutive steps with a non-finite loss or gradient."""


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


def truncate_metrics(path, last_step, logger):
    """Drop metrics lines after `last_step` (they are redone after a resume), and lines that
    are not whole JSON (the last one of a run killed, or stopped by a full disk, mid-write)
    with a warning. The file is rewritten atomically."""
    if not os.path.isfile(path):
        return
    kept, broken = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError, TypeError):
                broken += bool(line.strip())
    if broken:
        logger.warning("%s: dropped %d line(s) that were not whole (a run stopped mid-write)",
                       path, broken)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, path)


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
            raise TrainingDiverged(
                f"{self.run} consecutive steps had a non-finite loss or gradient; likely causes: "
                "a learning rate too high (lower train.learning_rate), transcripts longer than "
                "their audio allows, or corrupt audio in the batches logged above")


@dataclass
class TrainingRun:
    """What the loop needs: config, data source, network and step, schedule, where it starts."""
    cfg: object
    rank: int
    group_size: int
    logger: logging.Logger
    encoder: object
    source: object
    network: object
    infer_net: object  # the same network with log-softmax, for validation
    best: object  # BestTracker: DeepSpeech-best.ckpt and early stopping
    train_step: object
    accumulating: object  # AccumulatingStep over train_step (train.accumulate_steps > 1) or None
    lr: np.ndarray
    folder: object  # RunFolder (rank 0): this run's checkpoints, for rotation; None elsewhere
    start: int = 0
    last_ckpt: str = None
    window: dict = field(default_factory=lambda: new_window())

    @property
    def total(self):
        return self.cfg.train.epochs * self.source.steps_per_epoch


def load_training_data(cfg, rank, group_size, logger):
    """The training manifest as this rank's BatchSource (skips logged); returns (encoder, source)."""
    encoder = make_encoder(cfg)
    utts, report = load_utterances(cfg.data.train_manifest, cfg.features, encoder,
                                   max_duration=cfg.data.max_duration,
                                   threads=cfg.data.read_threads)
    logger.info("train manifest %s: %d utterances, %.2f h; skipped: %s",
                cfg.data.train_manifest, len(utts),
                sum(u.frames for u in utts) * cfg.features.window_stride / 3600, report.text())
    for line in report.files:
        logger.warning("skipped: %s", line)
    if encoder.dropped:
        logger.warning("characters dropped from transcripts: %s", dict(encoder.dropped))
    source = training_source(utts, cfg, rank, group_size)
    pads = source.bounds.tolist()
    logger.info("%d steps/epoch, %d padded lengths %s, padding %.1f%% of frames",
                source.steps_per_epoch, len(pads), pads, 100 * source.padding_fraction)
    if source.accumulate > 1:
        logger.info("gradient accumulation: %d batches of %d per optimizer step (%d batches/epoch)",
                    source.accumulate, cfg.data.batch_size, source.micro_per_epoch)
    if source.speed_kept:
        logger.info("speed perturbation: %d utterances keep factor 1.0 when a faster one is drawn "
                    "(their transcripts would not fit CTC)", source.speed_kept)
    return encoder, source


def build_model(cfg, group_size, steps_per_epoch, blank, logger):
    """Network (optionally from pretrained weights), lr schedule and train step."""
    if cfg.train.pre_trained_model_path:
        path = cfg.train.pre_trained_model_path
        params = read_checkpoint(path)
        check_features(params, cfg.features, path)
        # its output layer as it is (the zoo's has no bias): model.blank_bias only initialises
        network = build_network(cfg, output_bias="fc.module.bias" in params)
        load_weights(network, params, source=path)
        logger.info("weights loaded from %s", cfg.train.pre_trained_model_path)
    else:
        network = build_network(cfg)
    if cfg.train.freeze:
        frozen = freeze(network, cfg.train.freeze)
        trained = sum(p.size for p in network.trainable_params())
        logger.info("frozen (train.freeze %s): %d parameter tensors; %d trainable values left",
                    ",".join(cfg.train.freeze), len(frozen), trained)
    lr_init = cfg.train.learning_rate
    if group_size > 1 and cfg.train.lr_scaling == "linear":
        lr_init *= group_size  # the global batch is group_size x batch_size
        logger.info("learning rate scaled to %g for %d devices", lr_init, group_size)
    lr = get_lr(lr_init, cfg.train.epochs, steps_per_epoch,
                cfg.train.warmup_steps, cfg.train.hold_epochs, cfg.train.lr_anneal,
                cfg.train.lr_schedule)
    train_step = build_train_step(network, build_optimizer(network, cfg, lr), cfg, blank)
    train_step.set_train(True)
    return network, lr, train_step


def optimizer_step(run, batches):
    """(loss, finite, gradient norm) of one optimizer step over `batches` (one, or
    accumulate_steps)."""
    if run.accumulating is None:
        loss, ok, norm = run.train_step(*batches[0])[:3]
    else:
        loss, ok, norm = run.accumulating(batches)
    return float(loss.asnumpy()), bool(ok.asnumpy()), float(norm.asnumpy())


def resume_position(cfg, train_step, spe, logger):
    """The global step to start from: 0, or the one of the checkpoint train.resume picks."""
    if not cfg.train.resume:
        return 0
    path = find_resume_checkpoint(cfg.train.resume, cfg.train.checkpoint_dir, logger.warning)
    if path is None:
        logger.info("resume: no checkpoint in %s yet, starting from scratch",
                    cfg.train.checkpoint_dir)
        return 0
    start = restore(train_step, path, logger.info, cfg.features)
    logger.info("resumed from %s at step %d (epoch %d, step %d of it)", path, start,
                start // spe + 1, start % spe)
    return start


def claim_folders(cfg, rank):
    """Rank 0 takes the checkpoint and log folders for this run (src.run_folder): refused
    while another run uses them, or when a new run would mix with another run's files."""
    if rank != 0:
        return None
    ckpt_dir, resume = cfg.train.checkpoint_dir, cfg.train.resume
    inside = resume not in ("", "auto") and os.path.commonpath(
        [os.path.realpath(ckpt_dir), os.path.realpath(resume)]) == os.path.realpath(ckpt_dir)
    continuing = resume == "auto" or inside
    legacy = [path for _, path in list_checkpoints(ckpt_dir)] if continuing else []
    return RunFolder.claim(ckpt_dir, cfg.train.log_dir, continuing, legacy)


def normalisation_stats(cfg, network, utts, start, logger):
    """features.normalize=global: the per-frequency mean and std of the training utterances
    (their clean audio, no augmentation) into the network's norm.* before the first step; a
    resumed run and a fine-tuned checkpoint keep the statistics they were trained with. Every
    rank computes them over the whole manifest (the same float64 pass: equal values)."""
    if start > 0 or cfg.train.pre_trained_model_path:
        logger.info("global feature statistics: kept from the checkpoint")
        return
    t0, unread = time.perf_counter(), []
    mean, std, frames = global_stats([u.audio for u in utts], cfg.features,
                                     cfg.data.num_parallel_workers, skip=unread.append)
    if unread:  # training counts them again where it first reads them
        logger.warning("global feature statistics: %d unreadable files left out, e.g. %s",
                       len(unread), unread[0])
    network.norm.set_stats(mean, std)
    logger.info("global feature statistics of %d training utterances (%.2f h) in %.1f s: mean "
                "%.3f to %.3f, std %.3f to %.3f over the %d frequency bins", len(utts),
                frames * cfg.features.window_stride / 3600, time.perf_counter() - t0, mean.min(),
                mean.max(), std.min(), std.max(), len(mean))


def setup_run(cfg, rank=0, group_size=1):
    """Everything before the first step, as a TrainingRun."""
    folder = claim_folders(cfg, rank)
    logger, log_path = setup_logger(cfg.train.log_dir, rank)
    logger.info("log file: %s (rank %d of %d)", os.path.abspath(log_path), rank, group_size)
    logger.info("config: %s", json.dumps(to_dict(cfg)))
    encoder, source = load_training_data(cfg, rank, group_size, logger)
    network, lr, train_step = build_model(cfg, group_size, source.steps_per_epoch,
                                          encoder.blank_id, logger)
    start = resume_position(cfg, train_step, source.steps_per_epoch, logger)
    if cfg.features.normalize == "global":
        normalisation_stats(cfg, network, source.utts, start, logger)
    best = BestTracker(f"val_{cfg.train.best_metric}", cfg.train.early_stop_patience,
                       cfg.train.checkpoint_dir, resumed=start > 0, feature_cfg=cfg.features)
    if best.record:
        logger.info("best so far: %s %.2f at epoch %d (%s)", best.record["metric"],
                    best.record["value"], best.record["epoch"], BEST_CKPT)
    accumulating = AccumulatingStep(train_step) if source.accumulate > 1 else None
    return TrainingRun(cfg, rank, group_size, logger, encoder, source, network,
                       InferenceNet(network), best, train_step, accumulating, lr, folder, start)


def new_window():
    """What record_step sums between two metrics lines."""
    return {"loss": [], "norm": [], "utts": 0, "skipped": 0, "t0": time.perf_counter()}


def record_step(run, metrics, step, loss, ok, norm, batch_size, bar):
    """Progress postfix every step; a metrics line (MetricsLog) every log_interval steps and at
    epoch end: mean loss, lr, mean gradient norm (before clipping), utterances/s and steps
    skipped (no update) over its window."""
    w = run.window
    if ok:
        w["loss"].append(loss)
        w["norm"].append(norm)
    w["skipped"] += not ok
    w["utts"] += batch_size
    utt_s = w["utts"] / max(time.perf_counter() - w["t0"], 1e-9)
    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{run.lr[step]:.2e}", utt_s=f"{utt_s:.1f}")
    bar.update(1)
    done, spe = step + 1, run.source.steps_per_epoch
    if done % run.cfg.train.log_interval == 0 or done % spe == 0:
        metrics.write({"step": done, "epoch": step // spe + 1,
                       "loss": float(np.mean(w["loss"])) if w["loss"] else None,
                       "lr": float(run.lr[step]),
                       "grad_norm": float(np.mean(w["norm"])) if w["norm"] else None,
                       "utt_per_s": round(utt_s, 3), "skipped": w["skipped"]})
        run.window = new_window()


def maybe_checkpoint(run, step, epoch_end, last=False):
    """Save (rank 0) every save_checkpoint_steps, every save_checkpoint_epochs and at the end
    (the last step, or `last`: an early stop)."""
    cfg, done, spe = run.cfg, step + 1, run.source.steps_per_epoch
    save = cfg.train.save_checkpoint_steps and done % cfg.train.save_checkpoint_steps == 0
    if epoch_end:
        save = save or (done // spe) % cfg.train.save_checkpoint_epochs == 0 or done == run.total
    if last and run.last_ckpt != os.path.join(cfg.train.checkpoint_dir,
                                              checkpoint_name(step // spe + 1, step % spe + 1)):
        save = True
    if save and run.rank == 0:
        run.last_ckpt = save_checkpoint(run.train_step, run.network, cfg.train.checkpoint_dir,
                                        step // spe + 1, step % spe + 1, done,
                                        cfg.train.save_weights_only, run.folder,
                                        cfg.train.keep_checkpoint_max, cfg.features)
        run.logger.info("checkpoint: %s", os.path.abspath(run.last_ckpt))


def validate(run, metrics, step):
    """WER/CER of the validation manifest with the configured decoder (decode.*), logged and
    written to metrics.jsonl with the decoder's name.

    Data-parallel: every rank decodes its shard and the error counts are summed, so no rank
    waits in a collective while another validates alone (a long wait would hit the HCCL/NCCL
    timeout) and the figures equal one process decoding everything.
    """
    epoch = step // run.source.steps_per_epoch + 1
    pools = decoder_pools(run.cfg.decode, run.encoder.labels)
    try:
        rates, _, report = evaluate_manifest(run.infer_net, run.cfg.data.val_manifest, run.cfg,
                                             run.encoder, pools, desc="validation",
                                             rank=run.rank, group_size=run.group_size)
    finally:
        pools[0].close()
    decoder, rates = next(iter(rates.items()))
    if run.group_size > 1:
        rates.all_reduce()
    skipped = f"; skipped: {report.text()}" if report else ""
    run.logger.info("epoch %d validation: WER %.2f%% CER %.2f%% (%s, %d utterances%s)",
                    epoch, rates.wer, rates.cer, decoder, rates.utterances, skipped)
    metrics.write({"step": step + 1, "epoch": epoch, "val_wer": rates.wer, "val_cer": rates.cer,
                   "decoder": decoder})
    return rates


def keep_best(run, rates, step):
    """Update DeepSpeech-best.ckpt (rank 0 writes it); True when early stopping ends the run."""
    epoch, best = step // run.source.steps_per_epoch + 1, run.best
    value = rates.cer if run.cfg.train.best_metric == "cer" else rates.wer
    stop = best.update(value, epoch, step + 1, run.network, save=run.rank == 0)
    if best.record["epoch"] == epoch:
        run.logger.info("best so far: %s %.2f at epoch %d -> %s", best.metric, value, epoch,
                        os.path.abspath(os.path.join(run.cfg.train.checkpoint_dir, BEST_CKPT)))
    if stop:
        run.logger.info("early stop: %s has not improved for %d epochs (best %.2f at epoch %d, "
                        "%s)", best.metric, epoch - best.record["epoch"], best.record["value"],
                        best.record["epoch"], BEST_CKPT)
    return stop


def step_batches(run, iterator, first_use, step, bar):
    """The batches of optimizer step `step` that hold readable audio (FirstUse.screen); a
    failure that stops the run is logged with its file's name."""
    try:
        return first_use.screen(step, [next(iterator) for _ in run.source.micro_batches(step)])
    except AugmentError as err:  # the sox program failed: its words, the file named
        bar.close()
        run.logger.error("stopped: %s (fix it or train with --speed_perturb=false, then resume "
                         "with --resume=auto)", err)
        raise
    except UserError as err:
        bar.close()
        run.logger.error("stopped: %s (fix the data or remove it from the manifest, then resume "
                         "with --resume=auto)", err)
        raise


def train_on(run, guard, step, batches):
    """(loss, finite, gradient norm) of optimizer step `step` over `batches`; with none
    (nothing in them could be read) the step is skipped."""
    if not batches:
        run.logger.warning("step %d: no utterance could be read, step skipped", step + 1)
        return float("nan"), False, float("nan")
    loss, ok, norm = optimizer_step(run, batches)
    guard.update(ok, step + 1, lambda: run.source.batch_utterances(step))
    return loss, ok, norm


def train_steps(run, iterator, guard, first_use, metrics):
    """Optimizer steps from run.start to the end of training or an early stop."""
    cfg, spe, bar = run.cfg, run.source.steps_per_epoch, None
    for step in range(run.start, run.total):
        epoch, k = divmod(step, spe)
        if bar is None:
            bar = progress(total=spe, initial=k, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           unit="step", disable=run.rank != 0)
        batches = step_batches(run, iterator, first_use, step, bar)
        loss, ok, norm = train_on(run, guard, step, batches)
        record_step(run, metrics, step, loss, ok, norm, sum(b[0].shape[0] for b in batches), bar)
        epoch_end = (step + 1) % spe == 0
        if epoch_end:
            bar.close()
            bar = None
            unread = f"; skipped where first read: {first_use.report.text()}" \
                if first_use.report else ""
            run.logger.info("epoch %d done: step %d, last loss %.4f%s", epoch + 1, step + 1, loss,
                            unread)
        maybe_checkpoint(run, step, epoch_end)
        if epoch_end and cfg.data.val_manifest:
            if keep_best(run, validate(run, metrics, step), step):
                maybe_checkpoint(run, step, epoch_end, last=True)
                break


def run_training(cfg, rank=0, group_size=1):
    """Train as configured; returns the path of the last checkpoint written."""
    run = setup_run(cfg, rank, group_size)
    metrics_path = os.path.join(cfg.train.log_dir, METRICS)
    if rank == 0:
        truncate_metrics(metrics_path, run.start, run.logger)
    iterator = iterate(create_dataset(run.source, cfg.data.num_parallel_workers,
                                      start_step=run.start, flags=True))
    guard = BadStepGuard(cfg.train.max_bad_steps, run.logger)
    first_use = FirstUse(run.source, run.logger.warning, cfg.train.max_bad_steps, group_size > 1)
    with MetricsLog.open(cfg, rank, run.start, run.logger.warning) as metrics:
        run.logger.info("metrics: %s", os.path.abspath(metrics.path))
        train_steps(run, iterator, guard, first_use, metrics)
    if guard.total:
        run.logger.warning("%d steps were skipped for non-finite values", guard.total)
    if first_use.report:
        run.logger.warning("skipped where first read: %s", first_use.report.text())
    if rank == 0:
        try:
            png = plot_curves(metrics_path, os.path.join(cfg.train.log_dir, "learning_curves.png"))
            run.logger.info("learning curves: %s", os.path.abspath(png))
        except ValueError as err:  # nothing logged yet (a run resumed at its end)
            run.logger.warning("no learning curves drawn: %s", err)
    return run.last_ckpt
