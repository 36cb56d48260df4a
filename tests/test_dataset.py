"""Manifests (CSV and JSON), bucketing, batches and their padding."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from src.config import load_config
from src.dataset import BatchSource, load_utterances
from src.features import load_audio, spectrogram
from src.manifest import ManifestError, read_manifest, write_manifests
from src.planner import Batching
from src.text import make_encoder


def make_corpus(root, durations, texts=None):
    """wav/ + txt/ files; returns [(wav, txt, duration)]."""
    os.makedirs(root / "wav", exist_ok=True)
    os.makedirs(root / "txt", exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i, dur in enumerate(durations):
        wav, txt = root / "wav" / f"u{i}.wav", root / "txt" / f"u{i}.txt"
        sf.write(wav, (rng.standard_normal(int(dur * 16000)) * 3000).astype(np.int16), 16000)
        txt.write_text(texts[i] if texts else "HELLO WORLD")
        entries.append((str(wav), str(txt), dur))
    return entries


def test_csv_and_json_round_trip(tmp_path):
    entries = make_corpus(tmp_path, [1.0, 0.5, 2.25])
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    for name in ("m.csv", "m.json"):
        got = read_manifest(str(tmp_path / name))
        assert [(e.audio, e.transcript, e.duration) for e in got] == entries
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["root_path"] == str(tmp_path)
    assert data["samples"][0]["wav_path"] == "wav/u0.wav"


def test_zoo_csv_without_duration_reads_it_from_the_audio(tmp_path):
    entries = make_corpus(tmp_path, [0.75, 1.5])
    (tmp_path / "zoo.csv").write_text("".join(f"{w},{t}\n" for w, t, _ in entries))
    cfg = load_config([])
    utts, _ = load_utterances(str(tmp_path / "zoo.csv"), cfg.features, make_encoder(cfg))
    assert [u.frames for u in utts] == [1 + 12000 // 160, 1 + 24000 // 160]


def test_missing_file_names_the_manifest_line(tmp_path):
    entries = make_corpus(tmp_path, [1.0, 1.0])
    lines = [f"{w},{t}" for w, t, _ in entries] + [f"{tmp_path}/nope.wav,{entries[0][1]}"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r"m\.csv:3: audio file not found: .*nope\.wav"):
        read_manifest(str(tmp_path / "m.csv"))
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(str(tmp_path / "none.csv"))


def zoo_csv(path, entries):
    """A model-zoo CSV of `entries`: no duration column (the audio headers are read)."""
    path.write_text("".join(f"{w},{t}\n" for w, t, _ in entries))
    return str(path)


def test_unreadable_audio_without_a_duration_is_skipped_counted_and_named(tmp_path):
    entries = make_corpus(tmp_path, [1.0, 1.0])
    (tmp_path / "wav" / "u1.wav").write_bytes(b"RIFF garbage")
    cfg = load_config([])
    utts, report = load_utterances(zoo_csv(tmp_path / "m.csv", entries), cfg.features,
                                   make_encoder(cfg))
    assert [os.path.basename(u.audio) for u in utts] == ["u0.wav"]
    assert report == {"unreadable audio": 1} and "m.csv:2" in report.files[0]


def test_audio_that_fails_where_first_read_is_replaced_counted_and_named(tmp_path):
    """Durations from the manifest: audio is first opened by the batch, which keeps its shape
    (a copy of an utterance that worked) and flags the row; FirstUse counts and names it once."""
    from src.dataset import FIRST_USE, LONGER, UNREADABLE, FirstUse
    entries = make_corpus(tmp_path, [1.0, 1.0, 1.02, 0.9])
    (tmp_path / "wav" / "u1.wav").write_bytes(b"RIFF garbage")
    entries[2] = (*entries[2][:2], 0.9)  # the manifest says 0.9 s: 1.02 s do not fit its pad
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    cfg = load_config([])
    utts, report = load_utterances(str(tmp_path / "m.csv"), cfg.features, make_encoder(cfg))
    assert len(utts) == 4 and not report  # no audio opened yet
    src = BatchSource(utts, cfg.features, Batching(4, 1, epochs=2))
    inputs, lengths, targets, target_lengths, flags = src[0]
    chosen = [os.path.basename(utts[n].audio) for n in src.item_batch(0)[0]]
    assert dict(zip(chosen, flags.tolist())) == {"u0.wav": 0, "u1.wav": UNREADABLE,
                                                 "u2.wav": LONGER, "u3.wav": 0}
    good = flags.tolist().index(0)
    for j in np.flatnonzero(flags):
        np.testing.assert_array_equal(inputs[j], inputs[good])
        assert lengths[j] == lengths[good] and target_lengths[j] == target_lengths[good]
    warned = []
    first_use = FirstUse(src, warned.append, limit=3)
    for step in (0, 1):  # the same files again in epoch 2: counted and named once
        batches = [src[item] for item in src.micro_batches(step)]
        assert len(first_use.screen(step, batches)[0]) == 4  # the COLUMNS, trained on
    assert first_use.report == {FIRST_USE[UNREADABLE]: 1, FIRST_USE[LONGER]: 1}
    assert len(warned) == 2 and "u1.wav" in warned[0] + warned[1]
    assert "cannot read audio" in "".join(first_use.report.files)


def test_filters_are_counted_not_cropped(tmp_path):
    long_text = "A LONG TRANSCRIPT THAT CANNOT FIT INTO HALF A SECOND OF AUDIO AT ALL"
    entries = make_corpus(tmp_path, [1.0, 20.0, 0.5], ["OK", "TOO LONG AUDIO", long_text])
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    cfg = load_config([])
    utts, report = load_utterances(str(tmp_path / "m.csv"), cfg.features, make_encoder(cfg),
                                   max_duration=15.0)
    assert [u.text for u in utts] == ["OK"]
    assert report == {"longer than max_duration": 1, "transcript too long for the audio (CTC)": 1}


def test_batches_pad_with_zeros_and_shuffle_per_epoch(tmp_path):
    entries = make_corpus(tmp_path, [0.3, 0.9, 0.5, 1.2, 0.7, 0.4, 1.0],
                          ["A", "B C", "D", "E F G", "H", "I", "JK"])
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    cfg = load_config([])
    utts, _ = load_utterances(str(tmp_path / "m.json"), cfg.features, make_encoder(cfg))
    src = BatchSource(utts, cfg.features, Batching(2, 2, epochs=3, shuffle=True, seed=1))
    assert len(src) == 3 * 4
    orders = [src.epoch_order(e).tolist() for e in range(3)]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(set(map(tuple, orders))) > 1
    inputs, lengths, targets, target_lengths = src[5][:4]
    for j, u in enumerate(src.batch_utterances(5)):
        spec = spectrogram(load_audio(u.audio, 16000))
        assert lengths[j] == spec.shape[1] == u.frames
        np.testing.assert_array_equal(inputs[j, 0, :, :lengths[j]], spec)
        assert not inputs[j, 0, :, lengths[j]:].any()
        assert targets[j, :target_lengths[j]].tolist() == u.label.tolist()


def test_shards_partition_each_epoch(tmp_path):
    entries = make_corpus(tmp_path, [0.6 + 0.05 * i for i in range(9)])
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    cfg = load_config([])
    utts, _ = load_utterances(str(tmp_path / "m.csv"), cfg.features, make_encoder(cfg))
    shards = [BatchSource(utts, cfg.features, Batching(2, 3, epochs=2, shuffle=True, seed=4,
                                                       rank=r, group_size=2))
              for r in range(2)]
    for epoch in range(2):
        seen = [u.audio for s in shards for k in range(s.steps_per_epoch)
                for u in s.batch_utterances(epoch * s.steps_per_epoch + k)]
        assert len(seen) == 9 and len(set(seen)) == 9  # 5 batches: the shortest one split in 2


def test_paths_with_commas_and_quotes_survive_the_csv_round_trip(tmp_path):
    odd = tmp_path / 'a,b "c"'
    entries = make_corpus(odd, [1.0, 0.5])
    write_manifests(entries, odd / "m.csv", odd / "m.json", odd)
    got = read_manifest(str(odd / "m.csv"))
    assert [(e.audio, e.transcript, e.duration) for e in got] == entries
    cfg = load_config([])
    utts, _ = load_utterances(str(odd / "m.csv"), cfg.features, make_encoder(cfg))
    assert sorted(u.audio for u in utts) == sorted(e[0] for e in entries)


def test_a_manifest_with_nothing_usable_names_itself_and_why(tmp_path):
    entries = make_corpus(tmp_path, [1.0])
    (tmp_path / "wav" / "u0.wav").write_bytes(b"RIFF garbage")
    cfg = load_config([])
    with pytest.raises(ManifestError, match=r"m\.csv: no usable utterances \(skipped: 1 "
                                            r"unreadable audio; first: .*m\.csv:1: cannot read"):
        load_utterances(zoo_csv(tmp_path / "m.csv", entries), cfg.features, make_encoder(cfg))


def test_a_batch_with_nothing_readable_stops_the_run_after_the_limit(tmp_path):
    from src.dataset import FirstUse
    entries = make_corpus(tmp_path, [1.0, 1.0])
    for name in ("u0.wav", "u1.wav"):
        (tmp_path / "wav" / name).write_bytes(b"RIFF garbage")
    write_manifests(entries, tmp_path / "m.csv", tmp_path / "m.json", tmp_path)
    cfg = load_config([])
    utts, _ = load_utterances(str(tmp_path / "m.csv"), cfg.features, make_encoder(cfg))
    src = BatchSource(utts, cfg.features, Batching(1, 1, epochs=3))  # 2 steps an epoch
    first_use = FirstUse(src, lambda line: None, limit=5)  # an epoch's worth stops it
    assert first_use.screen(0, [src[0]]) == []  # the step is skipped
    with pytest.raises(ManifestError, match=r"step 2: no utterance of the last 2 step\(s\) could "
                                            r"be read \(first: .*cannot read audio .*--check_data"):
        first_use.screen(1, [src[1]])
    with pytest.raises(ManifestError, match="no utterance of a batch could be read"):
        FirstUse(src, lambda line: None, limit=0, data_parallel=True).screen(0, [src[0]])


def _runs(mask):
    """[(start, length)] of the True runs of a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts, ends - starts))


def test_spec_augment_masks_whole_bands_within_their_limits():
    from easydict import EasyDict

    from src.augment import spec_augment
    aug = EasyDict(freq_masks=2, freq_mask_width=27, time_masks=2, time_mask_ratio=0.05)
    spec = np.random.default_rng(0).standard_normal((161, 300)).astype(np.float32) + 5
    for seed in range(50):
        out = spec_augment(spec, np.random.default_rng(seed), aug)
        rows, cols = (out == 0).all(axis=1), (out == 0).all(axis=0)
        keep = ~rows[:, None] & ~cols[None, :]
        np.testing.assert_array_equal(out[keep], spec[keep])  # only whole bands change
        assert (out[~keep] == 0).all()
        # two bands at most (they may overlap or touch), each of at most 27 bins / 15 frames
        assert len(_runs(rows)) <= 2 and rows.sum() <= 2 * 27
        assert len(_runs(cols)) <= 2 and cols.sum() <= 2 * 15
    same = [spec_augment(spec, np.random.default_rng(7), aug) for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert (spec_augment(spec, np.random.default_rng(1), aug) == 0).sum() > 0


def test_training_batches_are_augmented_the_same_way_on_every_visit(sample_data):
    from src.config import load_config
    from src.dataset import load_utterances, training_source
    from src.text import make_encoder
    cfg = load_config(["--batch_size=2", "--spec_augment=true", "--epochs=2",
                       "--speed_perturb=false"])
    plain_cfg = load_config(["--batch_size=2", "--epochs=2", "--speed_perturb=false"])
    utts, _ = load_utterances(str(sample_data / "libri_train_manifest.csv"), cfg.features,
                              make_encoder(cfg))
    utts = utts[:6]
    first, again = training_source(utts, cfg), training_source(utts, cfg)
    plain = training_source(utts, plain_cfg)
    for step in (0, 4):  # a step of each epoch
        x, lengths = first[step][:2]
        np.testing.assert_array_equal(x, again[step][0])  # a resumed run sees the same batch
        y = plain[step][0]
        assert not np.array_equal(x, y)
        masked = (x != y)
        assert np.all(x[masked] == 0)  # augmentation only zeroes, inside the real frames
        for j, n in enumerate(lengths):
            assert not masked[j, :, :, n:].any()


@pytest.mark.parametrize("texts", [
    ["HELLO WORLD", "IT'S A TEST", "", "A"],  # normal already: kept as they are
    ["hello  world ", "\tTABS\nAND\x1fSEPARATORS\r", "IT’S", "  ", "X"],
    ["CAF\u00c9 AU LAIT", "NBSP\u00a0HERE", "NUL\0INSIDE", "OK"]])
def test_transcripts_normalised_together_equal_one_by_one(texts):
    from src.dataset import normalized
    from src.text import normalize_transcript
    assert normalized(texts) == [normalize_transcript(t) for t in texts]
