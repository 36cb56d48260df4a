"""Waveform augmentation (SoX speed, gain, noise) and how batches stay correct under it."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from test_dataset import make_corpus

from conftest import REPO, run
from src.augment import Augmenter, apply_gain, change_speed, mix_noise
from src.config import load_config
from src.dataset import BatchSource, load_utterances
from src.errors import UserError
from src.features import features_of, load_audio, num_frames, spectrogram, speed_frames
from src.manifest import write_manifests
from src.planner import Batching
from src.text import make_encoder

SR = 16000


def sine(freq, seconds, amplitude=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * SR / len(wave)


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.8, 1.25])
def test_sox_speed_scales_length_and_pitch(factor):
    wave = sine(1000.0, 1.3)
    out = change_speed(wave, SR, factor)
    assert abs(len(out) - len(wave) / factor) <= 1
    assert abs(peak_hz(out) - 1000.0 * factor) < 5.0  # pitch moves with the speed (not tempo)


def test_sox_speed_matches_the_sox_program(tmp_path):
    """pysox (pipes) and the sox command line on a float wav give the same samples."""
    wave = (np.random.default_rng(3).standard_normal(20000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "in.wav", wave, SR, subtype="FLOAT")
    subprocess.run(["sox", str(tmp_path / "in.wav"), "-e", "floating-point", "-b", "32",
                    str(tmp_path / "out.wav"), "speed", "1.1"], check=True)
    expected, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == SR
    np.testing.assert_allclose(change_speed(wave, SR, 1.1), expected, atol=1e-6)


def test_speed_frames_bounds_the_frames_sox_produces():
    rng = np.random.default_rng(0)
    for n in rng.integers(1600, 240000, 40):
        frames = num_frames(int(n), 160)
        for factor in (0.9, 1.1, 0.85, 1.2):
            got = num_frames(len(change_speed(np.zeros(n, np.float32) + 0.01, SR, factor)), 160)
            bound = speed_frames(frames, factor, 160)
            assert got <= bound <= got + 3, (n, factor, got, bound)
    assert speed_frames(123, 1.0, 160) == 123


def test_gain_scales_by_decibels_and_clips_like_a_recording():
    wave = sine(440.0, 0.5, amplitude=0.1)
    rms = np.sqrt(np.mean(wave ** 2))
    louder = apply_gain(wave, 6.0)
    assert np.sqrt(np.mean(louder ** 2)) / rms == pytest.approx(10 ** (6 / 20), rel=1e-5)
    clipped = apply_gain(sine(440.0, 0.5, amplitude=0.8), 6.0)
    assert clipped.max() == 1.0 and clipped.min() == -1.0


def test_noise_is_mixed_at_the_requested_snr_and_looped():
    rng = np.random.default_rng(1)
    speech = sine(300.0, 1.0, 0.3)
    noise = rng.standard_normal(5000).astype(np.float32)  # shorter: looped
    for snr in (0.0, 10.0, 25.0):
        mixed = mix_noise(speech, noise, snr, np.random.default_rng(2))
        added = mixed - speech
        measured = 10 * np.log10(np.mean(speech ** 2) / np.mean(added ** 2))
        assert measured == pytest.approx(snr, abs=0.01)
        assert len(mixed) == len(speech)
    period = mix_noise(speech, noise, 10.0, np.random.default_rng(2)) - speech
    np.testing.assert_allclose(period[:len(period) - 5000], period[5000:], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(mix_noise(np.zeros(100, np.float32), noise, 5.0, rng), 0.0)


def corpus(tmp_path, texts=None, durations=None):
    durations = durations or [0.6 + 0.07 * i for i in range(9)]
    entries = make_corpus(tmp_path, durations, texts)
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    return str(tmp_path / "m.csv")


def source(manifest, *overrides, epochs=4, batch_size=2, num_buckets=3):
    cfg = load_config(["--speed_perturb=true", "--speed_perturb_from_epoch=1", *overrides])
    utts, _ = load_utterances(manifest, cfg.features, make_encoder(cfg))
    aug = Augmenter(cfg.augment, SR)
    batching = Batching(batch_size, num_buckets, epochs=epochs, shuffle=True, seed=5)
    return BatchSource(utts, cfg.features, batching, augmenter=aug), cfg


def test_speed_perturbed_batches_lose_nothing_crop_nothing_and_keep_few_shapes(tmp_path):
    src, cfg = source(corpus(tmp_path))
    pads, factors_seen = set(), []
    for epoch in range(src.batching.epochs):
        batches, _, factors, _ = src.plan(epoch)
        factors_seen.append(tuple(factors))
        seen = []
        for k in range(src.steps_per_epoch):
            step = epoch * src.steps_per_epoch + k
            inputs, lengths, targets, target_lengths = src[step][:4]
            pads.add(inputs.shape[-1])
            utts = src.batch_utterances(step)
            for j, u in enumerate(utts):
                factor = factors[src.utts.index(u)]
                wave = change_speed(load_audio(u.audio, SR), SR, factor)
                expected = spectrogram(wave)  # features of the perturbed audio, whole
                assert lengths[j] == expected.shape[1] <= inputs.shape[-1]
                np.testing.assert_allclose(inputs[j, 0, :, :lengths[j]], expected, atol=1e-5)
                assert targets[j, :target_lengths[j]].tolist() == u.label.tolist()
            seen += [u.audio for u in utts]
        assert sorted(seen) == sorted(u.audio for u in src.utts)  # every utterance, once
    assert pads <= set(src.bounds.tolist()) and len(src.bounds) <= 3
    assert len(set(factors_seen)) > 1  # factors change per epoch
    assert set(np.concatenate(factors_seen)) == {0.9, 1.0, 1.1}
    assert [tuple(src.plan(e).factors) for e in range(src.batching.epochs)] == factors_seen


def test_a_transcript_too_long_for_a_faster_version_keeps_factor_one(tmp_path):
    # 1.0 s = 101 frames -> 51 CTC steps: 45 letters fit at 1.0, not sped up by 1.25 (41 steps)
    texts = ["ABCDEFGHIJKLMNOPQRSTUVWXYZ ABCDEFGHIJKLMNOPQR", "HI", "HELLO", "A B"]
    src, _ = source(corpus(tmp_path, texts, [1.0, 0.6, 0.7, 0.8]), "--speed_factors=1.25",
                    epochs=3)
    assert src.speed_kept == 1
    long_one = [u.text for u in src.utts].index(texts[0])
    factors = np.array([src.plan(e)[2] for e in range(3)])
    assert (factors[:, long_one] == 1.0).all()
    assert (np.delete(factors, long_one, axis=1) == 1.25).all()
    for item in range(len(src)):  # the one kept at 1.0 is the longest: its batch still fits
        inputs, lengths = src[item][:2]
        assert lengths.max() <= inputs.shape[-1]


def test_gain_and_noise_change_training_features_reproducibly(tmp_path):
    manifest = corpus(tmp_path)
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    sf.write(noise_dir / "hum.wav", (sine(120.0, 0.4) * 32767).astype(np.int16), 8000)
    overrides = ["--speed_perturb=false", "--gain_perturb=true", f"--noise_dir={noise_dir}",
                 "--noise_prob=1.0"]
    noisy, cfg = source(manifest, *overrides)
    again, _ = source(manifest, *overrides)
    plain, _ = source(manifest, "--speed_perturb=false")
    x, lengths = noisy[3][:2]
    np.testing.assert_array_equal(x, again[3][0])  # a resumed run sees the same batch
    y = plain[3][0]
    assert np.array_equal(lengths, plain[3][1]) and not np.allclose(x, y, atol=1e-3)
    u = noisy.batch_utterances(3)[0]
    clean = features_of(load_audio(u.audio, SR), cfg.features)
    np.testing.assert_array_equal(y[0, 0, :, :lengths[0]], clean)


@pytest.mark.parametrize("flag, message", [
    ("--speed_factors=0.9,3", "augment.speed_factors must be numbers in [0.5, 2]"),
    ("--gain_min_db=8", "gain_min_db (8.0) > gain_max_db"),
    ("--noise_dir=/nonexistent/noise", "is not a folder"),
    ("--noise_prob=1.5", "augment.noise_prob must be in [0, 1]"),
])
def test_bad_augmentation_settings_are_one_line_before_any_work(flag, message):
    with pytest.raises(UserError) as err:
        load_config(["--speed_perturb=true", flag])
    assert message in str(err.value)


def test_an_empty_noise_folder_and_a_missing_sox_stop_train_py_in_one_line(tmp_path):
    (tmp_path / "noise").mkdir()
    proc = run([sys.executable, "train.py", f"--noise_dir={tmp_path / 'noise'}"], ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no .wav or .flac files in" in proc.stderr.strip().splitlines()[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = dict(os.environ, PATH=str(bin_dir))  # no sox (python by its full path: a venv's
    # interpreter must not be linked elsewhere, it finds its packages from where it lies)
    proc = run([sys.executable, os.path.join(REPO, "train.py"), "--speed_perturb=true"],
               ok=False, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "augment.speed_perturb (on by default) needs the sox program" in \
        proc.stderr.strip().splitlines()[-1]


def test_a_failing_sox_names_the_file_and_quotes_sox(tmp_path, monkeypatch):
    from src.augment import AugmentError
    src, _ = source(corpus(tmp_path))
    fake = tmp_path / "bin"
    fake.mkdir()
    real = shutil.which("sox")  # answers pysox's format queries (sox -h); fails the effect
    (fake / "sox").write_text(f'#!/bin/sh\n[ "$1" = -h ] && exec {real} "$@"\n'
                              "echo 'sox FAIL formats: no handler for detected file type' >&2\n"
                              "exit 2\n")
    (fake / "sox").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    utt = src.batch_utterances(0)[0]
    with pytest.raises(AugmentError) as err:
        src.utterance_features(utt, 1.1, seed=0)
    said = str(err.value)
    assert said.startswith(f"{utt.audio}: the sox program failed on speed 1.1: ")
    assert "no handler for detected file type" in said
