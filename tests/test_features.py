"""Features against librosa, audio loading edge cases."""
import librosa
import numpy as np
import pytest
import soundfile as sf

from src.config import load_config
from src.features import AudioError, features_of, freq_bins, load_audio, num_frames, spectrogram


def librosa_reference(wave, window):
    spec = np.abs(librosa.stft(wave, n_fft=320, hop_length=160, win_length=320, window=window,
                               center=True, pad_mode="constant"))
    spec = np.log1p(spec)
    return (spec - spec.mean()) / spec.std()


@pytest.mark.parametrize("window", ["hamming", "hann", "blackman"])
@pytest.mark.parametrize("n", [1600, 16000 + 37, 4321])
def test_spectrogram_matches_librosa(window, n):
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    got = spectrogram(wave, 320, 160, window)
    want = librosa_reference(wave, window)
    assert got.shape == want.shape == (161, num_frames(n, 160))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_freq_bins_is_the_height_of_the_features():
    features = load_config([]).features
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    assert freq_bins(features) == features_of(wave, features).shape[0] == 161
    features.window_size = 0.025  # 400-sample windows
    assert freq_bins(features) == features_of(wave, features).shape[0] == 201


def test_silence_does_not_divide_by_zero():
    spec = spectrogram(np.zeros(3200, np.float32))
    assert np.isfinite(spec).all()


def test_load_audio_int16_scaling_and_stereo_downmix(tmp_path):
    left = np.array([32767, -32767, 1000, 0], np.int16)
    right = np.array([32767, 32767, -1000, 0], np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], 1), 16000, subtype="PCM_16")
    wave = load_audio(str(path), 16000)
    np.testing.assert_allclose(wave, (left.astype(np.float32) + right) / 2 / 32767, atol=1e-6)


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE", "PCM_24"])
def test_float_and_24_bit_files_read_as_their_16_bit_copy(tmp_path, subtype):
    """libsndfile's int16 read of a float file gives zeros (no scaling): read as float, then
    rounded to 16 bits, every format gives its 16-bit copy's samples."""
    from src.transcription import read_chunks
    from transcribe import file_blocks
    pcm = (np.random.default_rng(0).standard_normal(16000) * 6000).astype(np.int16)
    sf.write(tmp_path / "pcm16.wav", pcm, 16000, subtype="PCM_16")
    sf.write(tmp_path / "other.wav", pcm / 32768.0, 16000, subtype=subtype)
    want = load_audio(str(tmp_path / "pcm16.wav"), 16000)
    np.testing.assert_array_equal(load_audio(str(tmp_path / "other.wav"), 16000), want)
    (_, chunk), = read_chunks(str(tmp_path / "other.wav"), 16000, 15, 0.02)
    np.testing.assert_array_equal(chunk, want)
    _, _, blocks = file_blocks(str(tmp_path / "other.wav"), 120)
    np.testing.assert_array_equal(np.concatenate(list(blocks))[:, 0], pcm)


def test_flac_and_resampling(tmp_path):
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = tmp_path / "tone8k.flac"
    sf.write(path, tone, 8000, subtype="PCM_16")
    wave = load_audio(str(path), 16000)
    assert abs(len(wave) - 16000) <= 1  # one second at the new rate, not misread as 0.5 s
    peak = np.argmax(np.abs(np.fft.rfft(wave[:16000])))
    assert abs(peak - 440) <= 1  # still a 440 Hz tone


def test_corrupt_and_empty_audio_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(str(bad), 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty"):
        load_audio(str(empty), 16000)


@pytest.mark.parametrize("n", [0, 1, 159, 160, 321, 4321])
def test_spectrogram_stream_equals_the_whole_spectrogram(n):
    """Any piece sizes, one sample or all at once: the very frames of spectrogram(), each out
    once its window is complete (the last ones at finish, from the zero padding)."""
    from src.features import SpectrogramStream
    rng = np.random.default_rng(n)
    wave = rng.standard_normal(n).astype(np.float32)
    want = spectrogram(wave, 320, 160, "hann", normalize=False)
    for sizes in (rng.integers(1, 700, n), np.ones(n, int), [n]):
        stream, parts, start = SpectrogramStream(320, 160, "hann"), [], 0
        for size in sizes:
            parts.append(stream.feed(wave[start:start + size]))
            assert stream.frames <= max(0, (start + size - 160) // 160 + 1)  # only final frames
            start += size
            if start >= n:
                break
        np.testing.assert_array_equal(np.concatenate(parts + [stream.finish()], axis=1), want)


def test_global_stats_are_the_mean_and_std_of_all_frames(tmp_path):
    """Per frequency over every frame of every file, un-normalised; features_of then leaves
    the normalisation to the network."""
    from src.features import global_stats
    features = load_config(["--features.normalize=global"]).features
    rng = np.random.default_rng(0)
    paths, specs = [], []
    for i, (n, gain) in enumerate([(16000, 0.1), (4321, 0.5), (9000, 0.02)]):
        wave = (rng.standard_normal(n) * gain * 32767).astype(np.int16)
        paths.append(str(tmp_path / f"{i}.wav"))
        sf.write(paths[-1], wave, 16000, subtype="PCM_16")
        specs.append(features_of(load_audio(paths[-1], 16000), features))
        np.testing.assert_array_equal(specs[-1], spectrogram(load_audio(paths[-1], 16000),
                                                             normalize=False))
    frames = np.concatenate(specs, axis=1).astype(np.float64)  # (F, all frames)
    mean, std, count = global_stats(paths, features, workers=2, batch=2)
    assert count == frames.shape[1]
    np.testing.assert_allclose(mean, frames.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(std, frames.std(axis=1), rtol=1e-8)
