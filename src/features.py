"""Audio loading and the spectrogram the model consumes (pure numpy, no framework import).

    spec = spectrogram(load_audio(path, 16000), n_fft=320, hop=160, window="hamming")  # (161, T)

One function is used by training, evaluation, export verification and the tests, so the three
can never disagree about the window (the zoo's training and evaluation did); SpectrogramStream
computes the same frames as audio arrives (streaming), with the same per-frame formula
(log_spectra).

features.normalize says where the features are normalised, in exactly one place: "utterance"
here, by each utterance's own mean and std; "global" in the network (src/deepspeech2.GlobalNorm,
statistics of the training set from global_stats), so features_of gives un-normalised
log-spectrograms then.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from src.errors import UserError

# What libsndfile raises for a file it cannot open or decode: RuntimeError/LibsndfileError for
# corrupt or truncated data, TypeError for headerless (raw) audio, OSError for I/O problems.
READ_ERRORS = (RuntimeError, sf.LibsndfileError, TypeError, OSError)

_WINDOWS = {"hamming": np.hamming, "hann": np.hanning, "hanning": np.hanning,
            "blackman": np.blackman, "bartlett": np.bartlett}


class AudioError(UserError):
    """Unreadable, empty or unsupported audio; the message names the file."""


def stft_params(feature_cfg):
    """(n_fft, hop) in samples from the config's window size/stride in seconds."""
    n_fft = int(round(feature_cfg.sample_rate * feature_cfg.window_size))
    hop = int(round(feature_cfg.sample_rate * feature_cfg.window_stride))
    return n_fft, hop


def num_frames(num_samples, hop):
    """Spectrogram frames for `num_samples` samples (centred STFT): 1 + n // hop."""
    return 1 + num_samples // hop


def speed_frames(frames, factor, hop):
    """Upper bound of the frame count of an utterance of `frames` frames after SoX's speed
    `factor` (its output has round(N / factor) samples, +-1; measured), for padding.

    frames = 1 + N // hop, so N < frames * hop; one frame more covers resampled audio, whose
    frame count is estimated from its header at the original rate.
    """
    if factor == 1.0:
        return int(frames)
    samples = int(np.ceil((frames + 1) * hop / factor)) + 1
    return 1 + samples // hop


def freq_bins(feature_cfg):
    """Frequency bins F of the spectrogram (n_fft // 2 + 1; 161 for 20 ms windows at 16 kHz):
    the network's input height."""
    return stft_params(feature_cfg)[0] // 2 + 1


def read_error(path, err):
    """The AudioError for one of READ_ERRORS raised while reading `path`, in one line."""
    reason = " ".join(str(err).split())
    if isinstance(err, TypeError):  # soundfile asks for a sample rate: no header it knows
        reason = "no audio header libsndfile knows (raw or not audio)"
    return AudioError(f"cannot read audio {path}: {reason}")


def audio_info(path):
    """(frames, sample_rate) from the file's header (frames may be 0). Raises AudioError naming
    the file when there is no header libsndfile can read."""
    try:
        info = sf.info(path)
    except READ_ERRORS as err:
        raise read_error(path, err) from None
    return info.frames, info.samplerate


def pcm16(samples, path):
    """Samples of the file `path` as soundfile reads them in float32 (-1 to 1) -> int16 (N,
    channels): exact for 16-bit PCM files, rounded for float and 24-bit ones. (soundfile's own
    int16 read of a float file gives zeros: libsndfile does not scale floats to integers.)
    AudioError for a float file holding NaN or infinite samples."""
    if not np.isfinite(samples).all():
        raise AudioError(f"audio file {path} holds NaN or infinite samples")
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def load_audio(path, sample_rate):
    """Mono float32 waveform of `path` at `sample_rate`, scaled as the zoo (int16 / 32767).

    Multi-channel audio is averaged to mono; another sample rate is resampled (librosa).
    """
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)  # (N, channels)
    except READ_ERRORS as err:
        raise read_error(path, err) from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty")
    return resampled(to_mono(pcm16(data, path)), sr, sample_rate)


def to_mono(data):
    """int16 samples (N, channels) -> mono float32 (N,), scaled as the zoo (int16 / 32767)."""
    return data.astype(np.float32).mean(axis=1) / 32767.0


def resampled(wave, rate, sample_rate):
    """`wave` at `rate` -> float32 at `sample_rate` (librosa, only when they differ)."""
    if rate == sample_rate:
        return wave
    import librosa  # only when needed: importing librosa costs ~1 s
    return librosa.resample(wave, orig_sr=rate, target_sr=sample_rate).astype(np.float32)


def window_fn(name, n_fft):
    """Periodic window of length n_fft (as librosa/scipy get_window with fftbins=True)."""
    return _WINDOWS[name](n_fft + 1)[:-1].astype(np.float32)


def log_spectra(frames, window):
    """Windows of samples (T, n_fft) float32 -> log(1 + |rfft(window x frame)|) (F, T) float32."""
    spec = np.log1p(np.abs(np.fft.rfft(frames * window_fn(window, frames.shape[1]), axis=1)))
    return spec.T.astype(np.float32)  # (T, F) -> (F, T)


def spectrogram(wave, n_fft=320, hop=160, window="hamming", normalize=True):
    """log(1 + |STFT|), normalised per utterance unless `normalize` is False:
    (n_fft // 2 + 1, 1 + len(wave) // hop) float32.

    Centred frames with zero padding of n_fft // 2 on both sides (librosa.stft's default).
    """
    wave = np.asarray(wave, dtype=np.float32)
    padded = np.pad(wave, n_fft // 2)
    n = num_frames(len(wave), hop)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n]  # (T, n_fft)
    spec = log_spectra(frames, window)  # (F, T)
    if normalize:
        std = spec.std()
        spec = (spec - spec.mean()) / max(std, 1e-8)
    return spec


def features_of(wave, feature_cfg):
    """Mono waveform at feature_cfg.sample_rate -> the network's input spectrogram (F, T):
    normalised per utterance for features.normalize=utterance, un-normalised for global."""
    n_fft, hop = stft_params(feature_cfg)
    return spectrogram(wave, n_fft, hop, feature_cfg.window,
                       normalize=feature_cfg.normalize == "utterance")


def featurize(path, feature_cfg):
    """Audio file -> the network's input spectrogram (F, T): the one path of train, eval, export
    verification and transcription (which reads long files in chunks, then features_of).
    Raises AudioError naming the file."""
    return features_of(load_audio(path, feature_cfg.sample_rate), feature_cfg)


class SpectrogramStream:
    """spectrogram(wave, normalize=False) of a wave that arrives in pieces of any size, frame
    by frame as each becomes final: feed(piece) -> the new frames (F, k), finish() -> the last
    ones, whose windows reach into the zero padding after the end. Frame j is final once sample
    j * hop + n_fft // 2 - 1 has arrived. Holds less than n_fft + hop samples between calls.
    """

    def __init__(self, n_fft, hop, window):
        self.n_fft, self.hop, self.window = n_fft, hop, window
        self.buffer = np.zeros(n_fft // 2, np.float32)  # the padded wave from frame `frames` on
        self.samples = 0  # received
        self.frames = 0  # given out

    def feed(self, wave):
        """wave (N,) float32 at the feature rate -> the frames it completes (F, k)."""
        self.buffer = np.concatenate([self.buffer, np.asarray(wave, np.float32)])
        self.samples += len(wave)
        return self._take(self._windows())

    def finish(self):
        """The frames left at the end of the wave (F, k), up to num_frames(samples) in all."""
        self.buffer = np.concatenate([self.buffer, np.zeros(self.n_fft // 2, np.float32)])
        return self._take(min(self._windows(), num_frames(self.samples, self.hop) - self.frames))

    def _windows(self):
        """Whole windows in the buffer."""
        return max(0, (len(self.buffer) - self.n_fft) // self.hop + 1)

    def _take(self, count):
        if count == 0:
            return np.zeros((self.n_fft // 2 + 1, 0), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(
            self.buffer[:(count - 1) * self.hop + self.n_fft], self.n_fft)[::self.hop]
        self.buffer = self.buffer[count * self.hop:]
        self.frames += count
        return log_spectra(frames, self.window)  # (count, n_fft) -> (F, count)


STD_FLOOR = 1e-3  # a frequency bin (nearly) constant in training would amplify any content there


def global_stats(paths, feature_cfg, workers=1, batch=64, skip=None):
    """Per-frequency mean and std (F,) float64 of the un-normalised features of the audio files
    `paths`, and their frame count: one pass, each utterance's mean and sum of squared
    deviations merged in float64 (Chan et al.'s pairwise update: no cancellation over hours of
    audio). Features are computed `batch` files at a time in `workers` threads (libsndfile and
    the FFTs release the GIL). A file that cannot be read raises AudioError naming it, or with
    `skip` is left out and given to skip(error) (training: it is counted where first used).
    """
    n_fft, hop = stft_params(feature_cfg)

    def features(path):
        try:
            wave = load_audio(path, feature_cfg.sample_rate)
        except AudioError as err:
            if skip is None:
                raise
            skip(err)
            return None
        return spectrogram(wave, n_fft, hop, feature_cfg.window, normalize=False).astype(np.float64)

    count, mean, m2 = 0, 0.0, 0.0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(paths), batch):
            for spec in pool.map(features, paths[start:start + batch]):  # (F, T)
                if spec is None:
                    continue
                n, m = spec.shape[1], spec.mean(axis=1)
                delta, total = m - mean, count + n
                mean = mean + delta * n / total
                m2 = m2 + ((spec - m[:, None]) ** 2).sum(axis=1) + delta ** 2 * count * n / total
                count = total
    return mean, np.maximum(np.sqrt(m2 / count), STD_FLOOR), count
