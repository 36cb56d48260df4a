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
_READ_ERRORS = (RuntimeError, sf.LibsndfileError, TypeError, OSError)

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


def _reason(err):
    text = " ".join(str(err).split())
    if isinstance(err, TypeError):  # soundfile asks for a sample rate: no header it knows
        return "no audio header libsndfile knows (raw or not audio)"
    return text


def audio_info(path):
    """(frames, sample_rate) from the file's header (frames may be 0). Raises AudioError naming
    the file when there is no header libsndfile can read."""
    try:
        info = sf.info(path)
    except _READ_ERRORS as err:
        raise AudioError(f"cannot read audio {path}: {_reason(err)}") from None
    return info.frames, info.samplerate


def load_audio(path, sample_rate):
    """Mono float32 waveform of `path` at `sample_rate`, scaled as the zoo (int16 / 32767).

    Multi-channel audio is averaged to mono; another sample rate is resampled (librosa).
    """
    try:
        data, sr = sf.read(path, dtype="int16", always_2d=True)  # (N, channels)
    except _READ_ERRORS as err:
        raise AudioError(f"cannot read audio {path}: {_reason(err)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty")
    wave = data.astype(np.float32).mean(axis=1) / 32767.0  # (N,)
    if sr != sample_rate:
        import librosa  # only when needed: importing librosa costs ~1 s
        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate).astype(np.float32)
    return wave


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


def featurize(path, feature_cfg):
    """Audio file -> the network's input spectrogram (F, T): the one path of train, eval, export
    verification and transcription. Raises AudioError naming the file."""
    n_fft, hop = stft_params(feature_cfg)
    return spectrogram(load_audio(path, feature_cfg.sample_rate), n_fft, hop, feature_cfg.window)
