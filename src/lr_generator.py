"""Learning-rate schedule, one value per training step (fed to the optimizer as-is)."""
import numpy as np


def get_lr(lr_init, total_epochs, steps_per_epoch, warmup_steps=0, hold_epochs=0, anneal=1.1):
    """float32 array of length total_epochs * steps_per_epoch.

    Step s of epoch e = s // steps_per_epoch gets
        lr_init / anneal ** max(0, e + 1 - hold_epochs)    (the zoo's per-epoch anneal: full rate
                                                             for `hold_epochs`, then / anneal
                                                             every epoch)
    multiplied by (s + 1) / warmup_steps during the first `warmup_steps` steps.
    """
    if steps_per_epoch <= 0 or total_epochs <= 0:
        raise ValueError("total_epochs and steps_per_epoch must be positive")
    steps = np.arange(total_epochs * steps_per_epoch)
    epochs = steps // steps_per_epoch
    lr = lr_init / np.power(float(anneal), np.maximum(0, epochs + 1 - hold_epochs))
    if warmup_steps > 0:
        lr = lr * np.minimum(1.0, (steps + 1) / warmup_steps)
    return lr.astype(np.float32)
