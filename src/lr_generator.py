"""Learning-rate schedule, one value per training step (fed to the optimizer as-is)."""
import numpy as np

SCHEDULES = ("hold_anneal", "cosine")


def get_lr(lr_init, total_epochs, steps_per_epoch, warmup_steps=0, hold_epochs=0, anneal=1.1,
           schedule="hold_anneal"):
    """float32 array of length N = total_epochs * steps_per_epoch.

    hold_anneal: step s of epoch e = s // steps_per_epoch gets
        lr_init / anneal ** max(0, e + 1 - hold_epochs)    (the zoo's per-epoch anneal: full rate
                                                             for `hold_epochs`, then / anneal
                                                             every epoch)
    cosine: step s >= warmup_steps gets half a cosine period from lr_init towards 0,
        lr_init * (1 + cos(pi * (s - warmup_steps) / (N - warmup_steps))) / 2
    (the last step's rate is small but not 0; hold_epochs and anneal are not used).
    Either is multiplied by (s + 1) / warmup_steps during the first `warmup_steps` steps.
    """
    if steps_per_epoch <= 0 or total_epochs <= 0:
        raise ValueError("total_epochs and steps_per_epoch must be positive")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; one of {SCHEDULES}")
    total = total_epochs * steps_per_epoch
    steps = np.arange(total)
    if schedule == "cosine":
        decay = np.clip((steps - warmup_steps) / max(1, total - warmup_steps), 0.0, 1.0)
        lr = lr_init * 0.5 * (1.0 + np.cos(np.pi * decay))
    else:
        epochs = steps // steps_per_epoch
        lr = lr_init / np.power(float(anneal), np.maximum(0, epochs + 1 - hold_epochs))
    if warmup_steps > 0:
        lr = lr * np.minimum(1.0, (steps + 1) / warmup_steps)
    return lr.astype(np.float32)
