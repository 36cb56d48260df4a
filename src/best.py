"""The best epoch by validation, kept as DeepSpeech-best.ckpt, and early stopping.

After each validation, the metric (train.best_metric: val CER or WER, lower is better) is
compared with the best so far; an improvement writes the network's weights to
<checkpoint_dir>/DeepSpeech-best.ckpt and its record to DeepSpeech-best.json (metric, value,
epoch, step). keep_checkpoint_max never removes them (their names are not DeepSpeech-<e>_<s>).
train.early_stop_patience epochs in a row without improvement end the run. A resumed run reads
the record back, so the best-so-far state and the patience count survive a restart.
"""
import json
import os

from src.checkpoints import CKPT_PREFIX, save_network
from src.run_folder import write_json_atomic

BEST_CKPT = f"{CKPT_PREFIX}-best.ckpt"
BEST_RECORD = f"{CKPT_PREFIX}-best.json"


class BestTracker:
    """Best validation value so far and whether to stop; persisted next to the checkpoints."""

    def __init__(self, metric, patience, ckpt_dir, resumed, feature_cfg=None):
        self.metric, self.patience, self.dir = metric, patience, ckpt_dir
        self.feature_cfg = feature_cfg  # recorded with the weights (checkpoints.save_network)
        self.record = None
        path = os.path.join(ckpt_dir, BEST_RECORD)
        if resumed and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if record.get("metric") == metric:
                self.record = record

    def update(self, value, epoch, step, network, save=True):
        """Record the epoch's value; save the network when it is the best. Returns True when
        the run should stop (patience epochs after the best one without a better value)."""
        if self.record is None or value < self.record["value"]:
            self.record = {"metric": self.metric, "value": value, "epoch": epoch, "step": step}
            if save:
                self._save(network)
        return bool(self.patience) and epoch - self.record["epoch"] >= self.patience

    def _save(self, network):
        os.makedirs(self.dir, exist_ok=True)
        save_network(network, os.path.join(self.dir, BEST_CKPT), self.feature_cfg)
        write_json_atomic(os.path.join(self.dir, BEST_RECORD),
                          {**self.record, "checkpoint": BEST_CKPT})
