"""Training-only augmentation of features: SpecAugment's frequency and time masks.

    spec = spec_augment(spec, rng, cfg.augment)   # (F, T) -> (F, T), a masked copy

Each mask sets a band to 0, the mean of the per-utterance normalised features: up to
`freq_masks` bands of at most `freq_mask_width` bins and up to `time_masks` spans of at most
`time_mask_ratio` x T frames, every band and width drawn anew (the iid masks of Park et al.
2019). The caller seeds `rng` with (seed, global step, position in the batch), so the masks are
the same whenever the same step runs again: a run resumed after a kill sees the batches an
uninterrupted one saw. Evaluation, validation and export never call this.
"""


def spec_augment(spec, rng, aug):
    """A copy of spec (F, T) with SpecAugment masks drawn from `rng` (np.random.Generator)."""
    out = spec.copy()
    n_freq, n_time = out.shape
    for _ in range(aug.freq_masks):
        width = int(rng.integers(0, min(aug.freq_mask_width, n_freq) + 1))
        start = int(rng.integers(0, n_freq - width + 1))
        out[start:start + width, :] = 0.0
    longest = int(aug.time_mask_ratio * n_time)
    for _ in range(aug.time_masks):
        width = int(rng.integers(0, longest + 1))
        start = int(rng.integers(0, n_time - width + 1))
        out[:, start:start + width] = 0.0
    return out
