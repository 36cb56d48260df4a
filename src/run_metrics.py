"""The metrics of a training run: metrics.jsonl and, with train.tensorboard, the same scalars as
TensorBoard event files next to it (tensorboardX: needs neither TensorFlow nor torch).

    with MetricsLog.open(cfg, rank, start, warn) as metrics:
        metrics.write({"step": 10, "epoch": 1, "loss": 3.2, "lr": 1e-3, ...})

Only rank 0 records (the other ranks' progress is in their own log files). A resumed run
(`start` > 0) drops what was recorded after its checkpoint: metrics.jsonl's lines are cut by
the caller (training.truncate_metrics) and TensorBoard hides the events from step start + 1 on
(tensorboardX's purge_step), so both hold each global step once.
"""
import json
import os

METRICS = "metrics.jsonl"

# metrics.jsonl key -> TensorBoard tag. The step lines (every train.log_interval steps and at
# epoch ends) hold the training scalars over their window of steps, the validation lines WER/CER.
TAGS = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/gradient_norm",
        "utt_per_s": "train/utterances_per_s", "skipped": "train/skipped_steps",
        "val_wer": "validation/wer", "val_cer": "validation/cer"}


def event_writer(log_dir, start, warn):
    """A tensorboardX SummaryWriter into `log_dir` (a resumed run purges the steps after
    `start`), or None with one warning when tensorboardX is not installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        warn("train.tensorboard: tensorboardX is not installed, so no TensorBoard event files "
             "(pip install tensorboardX, or --tensorboard=false); metrics.jsonl has everything")
        return None
    return SummaryWriter(log_dir, purge_step=start + 1 if start else None)


class MetricsLog:
    """metrics.jsonl lines and their TensorBoard scalars (`events`: a SummaryWriter or None)."""

    def __init__(self, path, events=None):
        self.path, self.events = path, events
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())

    @classmethod
    def open(cls, cfg, rank, start, warn):
        """The run's log: <train.log_dir>/metrics.jsonl on rank 0 (with TensorBoard events when
        train.tensorboard), os.devnull on the other ranks."""
        if rank != 0:
            return cls(os.devnull)
        events = event_writer(cfg.train.log_dir, start, warn) if cfg.train.tensorboard else None
        return cls(os.path.join(cfg.train.log_dir, METRICS), events)

    def write(self, record):
        """One record (a dict with "step"): a metrics.jsonl line, and each of its TAGS values
        that is set as a scalar at that step."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.events is not None:
            for key, tag in TAGS.items():
                if record.get(key) is not None:
                    self.events.add_scalar(tag, record[key], record["step"])

    def close(self):
        self.file.close()
        if self.events is not None:
            self.events.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
