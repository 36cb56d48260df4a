"""Training-only augmentation (cfg.augment): speed, gain and noise on the waveform, SpecAugment
on the features. Evaluation, validation and export never call this.

    augmenter = Augmenter(cfg.augment, sample_rate)
    wave = augmenter.wave(wave, factor, rng)   # (N,) -> (N',), N' ~ N / factor
    spec = augmenter.spec(spec, rng)           # (F, T) -> (F, T)

The speed factor of an utterance is drawn per epoch by the epoch planner (it changes the frame
count, so batches are formed after it, see src.planner.EpochPlanner); everything else draws from
`rng`, which the caller seeds with (seed, step, position in the batch): a run resumed after a
kill sees the batches an uninterrupted one saw.
"""
import functools
import os
import shutil

import numpy as np

from src.errors import UserError

NOISE_EXTENSIONS = (".wav", ".flac")
# Command-line overrides that switch every augmentation off (the benchmarks' baselines).
ALL_OFF = ["--speed_perturb=false", "--gain_perturb=false", "--spec_augment=false", "--noise_dir="]


class AugmentError(UserError):
    """An augmentation setting that cannot work (no sox program, an empty noise folder...)."""


def change_speed(wave, sample_rate, factor):
    """`wave` played `factor` times faster (pitch and tempo, SoX's `speed` effect, as Kaldi's
    speed perturbation): (N,) float32 -> (~N / factor,) float32 at the same sample rate."""
    if factor == 1.0:
        return wave
    import sox  # pysox drives the sox program through pipes
    tfm = sox.Transformer()
    tfm.speed(factor)
    try:
        out = tfm.build_array(input_array=np.asarray(wave, np.float32), sample_rate_in=sample_rate)
    except sox.core.SoxError as err:  # sox's own words, not a generic complaint about the audio
        said = " ".join(str(err).split("Stderr:")[-1].split()) or str(err)
        raise AugmentError(f"the sox program failed on speed {factor:g}: {said}") from None
    return out.astype(np.float32).reshape(-1)


def apply_gain(wave, db):
    """`wave` x 10 ** (db / 20), clipped to [-1, 1] as a 16-bit recording would be."""
    return np.clip(wave * np.float32(10.0 ** (db / 20.0)), -1.0, 1.0).astype(np.float32)


def mix_noise(wave, noise, snr_db, rng):
    """`wave` + `noise` scaled to `snr_db` dB below the signal's power (mean square).

    noise (M,) is looped when shorter than wave (N,) and starts at a random offset. Silent
    signal or noise: `wave` unchanged.
    """
    reps = -(-len(wave) // len(noise)) + 1
    start = int(rng.integers(0, len(noise)))
    part = np.tile(noise, reps)[start:start + len(wave)]
    p_signal, p_noise = float(np.mean(wave ** 2)), float(np.mean(part ** 2))
    if p_signal == 0.0 or p_noise == 0.0:
        return wave
    scale = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (wave + scale * part).astype(np.float32)


def noise_files(folder):
    """Sorted .wav/.flac files under `folder` (recursively); AugmentError if there are none."""
    if not os.path.isdir(folder):
        raise AugmentError(f"augment.noise_dir: {folder} is not a folder")
    found = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                   for name in names if name.lower().endswith(NOISE_EXTENSIONS))
    if not found:
        raise AugmentError(f"augment.noise_dir: no .wav or .flac files in {folder}")
    from src.features import audio_info
    for path in found:  # headers only: an unreadable noise file stops the run before it starts
        if audio_info(path)[0] == 0:
            raise AugmentError(f"augment.noise_dir: {path} is empty")
    return found


@functools.lru_cache(maxsize=32)
def _noise(path, sample_rate):
    from src.features import load_audio  # cached per worker process: noise files are reused
    return load_audio(path, sample_rate)


def check_augment(aug):
    """AugmentError for settings that cannot run (before any work)."""
    if aug.speed_perturb and shutil.which("sox") is None:
        raise AugmentError("augment.speed_perturb (on by default) needs the sox program on PATH: "
                           "install it (Debian/Ubuntu: apt-get install sox; conda: conda install "
                           "-c conda-forge sox) or train with --speed_perturb=false")
    if aug.speed_perturb:
        bad = [f for f in aug.speed_factors if not isinstance(f, (int, float)) or not
               0.5 <= float(f) <= 2.0]
        if bad or not aug.speed_factors:
            raise AugmentError(f"augment.speed_factors must be numbers in [0.5, 2]; got "
                               f"{aug.speed_factors!r}")
    if aug.gain_min_db > aug.gain_max_db:
        raise AugmentError(f"augment.gain_min_db ({aug.gain_min_db}) > gain_max_db "
                           f"({aug.gain_max_db})")
    if aug.noise_snr_min_db > aug.noise_snr_max_db:
        raise AugmentError(f"augment.noise_snr_min_db ({aug.noise_snr_min_db}) > "
                           f"noise_snr_max_db ({aug.noise_snr_max_db})")
    if not 0.0 <= aug.noise_prob <= 1.0:
        raise AugmentError(f"augment.noise_prob must be in [0, 1]; got {aug.noise_prob}")
    if aug.noise_dir:
        noise_files(aug.noise_dir)


def spec_augment(spec, rng, aug):
    """A copy of spec (F, T) with SpecAugment masks drawn from `rng` (np.random.Generator).

    Each mask sets a band to 0, the mean of the per-utterance normalised features: up to
    `freq_masks` bands of at most `freq_mask_width` bins and up to `time_masks` spans of at most
    `time_mask_ratio` x T frames, every band and width drawn anew (the iid masks of Park et al.
    2019).
    """
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


class Augmenter:
    """The augmentations cfg.augment switches on, applied in a fixed order: speed, gain, noise
    (waveform), then SpecAugment (features)."""

    def __init__(self, aug, sample_rate):
        self.aug, self.sample_rate = aug, sample_rate
        self.gain = aug.gain_perturb
        self.noise = noise_files(aug.noise_dir) if aug.noise_dir else []
        self.speed = bool(aug.speed_perturb)
        self.factors = [float(f) for f in aug.speed_factors] if self.speed else [1.0]
        self.speed_from = aug.speed_perturb_from_epoch - 1  # 0-based: the planner's epochs

    @property
    def on_wave(self):
        """True when the waveform is changed (the features must be computed again)."""
        return self.speed or self.gain or bool(self.noise)

    @property
    def on_spec(self):
        return bool(self.aug.spec_augment)

    def wave(self, wave, factor, rng):
        """Speed `factor` (drawn by the batch source), then gain and noise drawn from `rng`."""
        wave = change_speed(wave, self.sample_rate, factor)
        if self.gain:
            wave = apply_gain(wave, rng.uniform(self.aug.gain_min_db, self.aug.gain_max_db))
        if self.noise and rng.random() < self.aug.noise_prob:
            noise = _noise(self.noise[int(rng.integers(len(self.noise)))], self.sample_rate)
            snr = rng.uniform(self.aug.noise_snr_min_db, self.aug.noise_snr_max_db)
            wave = mix_noise(wave, noise, snr, rng)
        return wave

    def spec(self, spec, rng):
        return spec_augment(spec, rng, self.aug) if self.on_spec else spec
