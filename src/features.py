"""Audio loading and the spectrogram the model consumes (pure numpy, no framework import).

    spec = spectrogram(load_audio(path, 16000), n_fft=320, hop=160, window="hamming")  # (161, T)

One function is used by training, evaluation, export verification and the tests, so the three
can never disagree about the window (the zoo's training and evaluation did).
"""
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


def load_audio(path, sample_rate):
    """Mono float32 waveform of `path` at `sample_rate`, scaled as the zoo (int16 / 32767).

    Multi-channel audio is averaged to mono; another sample rate is resampled (librosa).
    """
    try:
        data, sr = sf.read(path, dtype="int16", always_2d=True)  # (N, channels)
    except READ_ERRORS as err:
        raise read_error(path, err) from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty")
    return resampled(to_mono(data), sr, sample_rate)


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


def spectrogram(wave, n_fft=320, hop=160, window="hamming", normalize=True):
    """log(1 + |STFT|), normalised per utterance: (n_fft // 2 + 1, 1 + len(wave) // hop) float32.

    Centred frames with zero padding of n_fft // 2 on both sides (librosa.stft's default).
    """
    wave = np.asarray(wave, dtype=np.float32)
    padded = np.pad(wave, n_fft // 2)
    n = num_frames(len(wave), hop)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n]  # (T, n_fft)
    spec = np.log1p(np.abs(np.fft.rfft(frames * window_fn(window, n_fft), axis=1)))  # (T, F)
    spec = spec.T.astype(np.float32)  # (F, T)
    if normalize:
        std = spec.std()
        spec = (spec - spec.mean()) / max(std, 1e-8)
    return spec


def features_of(wave, feature_cfg):
    """Mono waveform at feature_cfg.sample_rate -> the network's input spectrogram (F, T)."""
    n_fft, hop = stft_params(feature_cfg)
    return spectrogram(wave, n_fft, hop, feature_cfg.window)


def featurize(path, feature_cfg):
    """Audio file -> the network's input spectrogram (F, T): the one path of train, eval, export
    verification and transcription (which reads long files in chunks, then features_of).
    Raises AudioError naming the file."""
    return features_of(load_audio(path, feature_cfg.sample_rate), feature_cfg)
