"""Audio loading and the spectrogram the model consumes (pure numpy, no framework import).

    spec = spectrogram(load_audio(path, 16000), n_fft=320, hop=160, window="hamming")  # (161, T)

One function is used by training, evaluation, export verification and the tests, so the three
can never disagree about the window (the zoo's training and evaluation did).
"""
import numpy as np
import soundfile as sf

_WINDOWS = {"hamming": np.hamming, "hann": np.hanning, "hanning": np.hanning,
            "blackman": np.blackman, "bartlett": np.bartlett}


class AudioError(ValueError):
    """Unreadable, empty or unsupported audio; the message names the file."""


def stft_params(feature_cfg):
    """(n_fft, hop) in samples from the config's window size/stride in seconds."""
    n_fft = int(round(feature_cfg.sample_rate * feature_cfg.window_size))
    hop = int(round(feature_cfg.sample_rate * feature_cfg.window_stride))
    return n_fft, hop


def num_frames(num_samples, hop):
    """Spectrogram frames for `num_samples` samples (centred STFT): 1 + n // hop."""
    return 1 + num_samples // hop


def load_audio(path, sample_rate):
    """Mono float32 waveform of `path` at `sample_rate`, scaled as the zoo (int16 / 32767).

    Multi-channel audio is averaged to mono; another sample rate is resampled (librosa).
    """
    try:
        data, sr = sf.read(path, dtype="int16", always_2d=True)  # (N, channels)
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise AudioError(f"cannot read audio {path}: {err}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty")
    wave = data.astype(np.float32).mean(axis=1) / 32767.0  # (N,)
    if sr != sample_rate:
        import librosa  # only when needed: importing librosa costs ~1 s
        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate).astype(np.float32)
    return wave


def window_fn(name, n_fft):
    """Periodic window of length n_fft (as librosa/scipy get_window with fftbins=True)."""
    if name not in _WINDOWS:
        raise ValueError(f"unknown window '{name}': choose one of {sorted(_WINDOWS)}")
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
