"""transcribe.py: words and times from CTC frames, overlapping chunks joined where no word is cut
(chunked = unchunked for a network that sees only its own frame), bounded memory, output formats
(named lines, JSON error records, SRT/WebVTT), input discovery, checkpoint and MindIR giving the
same text, bad files named and skipped."""
import json
import os
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run
from src.decoder import GreedyDecoder
from src.text import load_labels
from src.transcription import (
    Decoded,
    audio_inputs,
    chunk_sizes,
    cues,
    merge_frame,
    merged,
    read_chunks,
    subtitles,
    timed_words,
)
from transcribe import split_command_line, subtitle_names

LABELS = load_labels(f"{REPO}/labels.json")
SPACE = LABELS.index(" ")
FIRST_BIN, BIN_STEP, PAUSE_BIN = 20, 4, 10  # ToneNet: A at 1000 Hz, B at 1200 Hz, ...; a
                                            # pause between words at 500 Hz


def frames_of(path_labels, peak=0.9):
    """Log-probabilities (T, 29) whose argmax follows `path_labels` (characters, '_' blank)."""
    probs = np.full((len(path_labels), len(LABELS)), (1 - peak) / (len(LABELS) - 1))
    for t, ch in enumerate(path_labels):
        probs[t, LABELS.index(ch)] = peak
    return np.log(probs)


def greedy_words(probs, frame_seconds, offset=0.0, duration=np.inf):
    words = GreedyDecoder(LABELS).decode(probs).words
    return timed_words(words, probs, LABELS, frame_seconds, offset, duration)


def test_words_times_and_confidence_from_a_synthetic_alignment():
    #        0123456789012345
    path = "__HH_I_ _YOU__'D"  # repeats merge, blanks split, ' ' ends a word
    probs = frames_of(path)
    probs[3, LABELS.index("H")] = np.log(0.5)  # the second H frame only counts as a repeat
    words = greedy_words(probs, frame_seconds=0.02, offset=10.0)
    assert [w["word"] for w in words] == ["HI", "YOU'D"]
    assert (words[0]["start"], words[0]["end"]) == (10.04, 10.12)  # H at frame 2, I at 5
    assert (words[1]["start"], words[1]["end"]) == (10.18, 10.32)  # frames 9..15
    assert words[0]["confidence"] == pytest.approx(0.9)  # frames 2 (H) and 5 (I)
    assert greedy_words(frames_of("____"), 0.02) == []
    clipped = greedy_words(probs, 0.02, offset=10.0, duration=10.3)  # the file ends at 10.3 s
    assert [(w["start"], w["end"]) for w in clipped] == [(10.04, 10.12), (10.18, 10.3)]


def test_overlapping_chunks_on_the_frame_grid_cover_the_file(tmp_path):
    rate = 8000
    wave = (np.random.default_rng(0).standard_normal(rate * 23) * 3000).astype(np.int16)
    path = tmp_path / "long.wav"
    sf.write(path, wave, rate)
    chunks = list(read_chunks(str(path), rate, chunk_seconds=10, frame_seconds=0.02))
    # overlap min(2 s, 10 s / 3): chunks start every 8 s = 400 frames of 20 ms; the last one
    # takes the rest (7 s)
    assert [o for o, _ in chunks] == [0, 8, 16]
    assert [len(w) for _, w in chunks] == [10 * rate, 10 * rate, 7 * rate]
    for offset, w in chunks:
        start = int(offset * rate)
        np.testing.assert_array_equal(w, wave[start:start + len(w)] / np.float32(32767))
    # chunks shorter than twice the overlap: a third of the chunk overlaps
    assert chunk_sizes(16000, 3, 0.02) == (48000, 32000)
    # another rate: the step stays a whole number of 20-ms frames (441 samples at 22050 Hz)
    assert chunk_sizes(22050, 15, 0.02) == (330750, 650 * 441)


def test_memory_of_chunked_reading_does_not_grow_with_the_length(tmp_path):
    rate = 16000
    peaks = []
    for minutes in (1, 6):
        path = tmp_path / f"{minutes}.flac"
        noise = np.random.default_rng(minutes).standard_normal(rate * 60 * minutes) * 3000
        sf.write(path, noise.astype(np.int16), rate)
        del noise
        tracemalloc.start()
        chunks = read_chunks(str(path), rate, chunk_seconds=15, frame_seconds=0.02)
        end = max(round(offset * rate) + len(w) for offset, w in chunks)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert end == rate * 60 * minutes
    # a 6-minute file needs no more than a 1-minute one (a whole 6-min read: ~23 MB float32)
    assert peaks[1] < 1.3 * peaks[0] and peaks[1] < 8 * 15 * rate * 4


def test_the_join_is_a_frame_no_word_straddles_nearest_the_middle_of_the_overlap():
    # overlap [100, 140): middle half [110, 130], middle 120
    assert merge_frame([], 100, 140) == 120
    # words of either chunk over 112..126 and 126..135: free frames 110..112 and 126
    assert merge_frame([(112, 125), (116, 126), (126, 135)], 100, 140) == 126
    # no free frame: the fewest straddling spans (one, at 116..118), nearest the middle
    assert merge_frame([(105, 116), (118, 140), (100, 131)], 100, 140) == 118


def test_chunks_that_disagree_about_a_word_give_it_once():
    # the later chunk (from frame 100) puts WHITE 5 frames later than the earlier one did:
    # joined in the middle (120) it would be taken from both, at 116 (free in both) from one
    earlier = Decoded(0.0, 0, np.zeros((140, 29)), [("THE", 104, 108), ("WHITE", 116, 124),
                                                    ("HOUSE", 127, 133)])
    later = Decoded(2.0, 100, np.zeros((100, 29)), [("THE", 4, 8), ("WHITE", 21, 26),
                                                    ("HOUSE", 28, 34), ("IS", 50, 55)])
    taken = [(chunk.first, words) for chunk, words in merged([earlier, later])]
    assert taken == [(0, [("THE", 104, 108)]),
                     (100, [("WHITE", 21, 26), ("HOUSE", 28, 34), ("IS", 50, 55)])]


class ToneNet:
    """A test network that reads only its own spectrogram column: output frame t (input column
    2t, as the conv front-end's stride) is the letter of the column's loudest frequency bin
    (bin k: k x 50 Hz at the default features; A..Z every BIN_STEP bins from FIRST_BIN, where
    a 20-ms window holds many periods; the nearest letter, as a column that holds two tones
    may peak between them), else a space (the pause tone at PAUSE_BIN, or padding). The
    loudest bin does not move under the per-chunk normalisation, so chunked and unchunked
    outputs differ only in a chunk's edge columns."""

    training = False

    def set_train(self, mode):
        self.training = mode

    def __call__(self, x, lengths):
        import mindspore as ms

        from src.conv_spec import output_lengths
        loudest = x.asnumpy()[:, 0, :, ::2].argmax(axis=1)  # (B, T')
        letter = np.round((loudest - FIRST_BIN) / BIN_STEP).astype(int) + 1  # A = 1
        labels = np.where((letter >= 1) & (letter <= 26), letter, SPACE)
        probs = np.full((*labels.shape, len(LABELS)), 0.1 / (len(LABELS) - 1), np.float32)
        np.put_along_axis(probs, labels[..., None], 0.9, axis=2)
        out_lengths = output_lengths(lengths.asnumpy())
        return ms.Tensor(np.log(probs).transpose(1, 0, 2)), ms.Tensor(out_lengths)


def tone_words(rng, seconds, rate=16000):
    """(int16 wave, words) of random words of 2-4 letters, each letter 60-100 ms of its
    ToneNet tone, between 100-300 ms of the pause tone (one continuous phase: no clicks)."""
    segments, words = [(PAUSE_BIN, 0.2)], []  # (bin, seconds)
    while sum(d for _, d in segments) < seconds:
        letters = rng.choice(26, size=rng.integers(2, 5), replace=False) + 1  # A = 1
        segments += [(FIRST_BIN + BIN_STEP * (k - 1), rng.uniform(0.06, 0.1)) for k in letters]
        segments.append((PAUSE_BIN, rng.uniform(0.1, 0.3)))
        words.append("".join(LABELS[k] for k in letters))
    hz = np.concatenate([np.full(int(d * rate), 50.0 * b) for b, d in segments])
    return (0.3 * np.sin(2 * np.pi * np.cumsum(hz) / rate) * 32767).astype(np.int16), words


def tone_transcriber(chunk_seconds):
    from src.config import load_config
    from src.transcription import Transcriber
    cfg = load_config([f"--chunk_seconds={chunk_seconds}", "--chunks_per_batch=2"],
                      entry="transcribe")
    return Transcriber(ToneNet(), cfg)


def test_chunked_transcription_equals_the_unchunked_one_of_a_local_network(ms_context, tmp_path):
    wave, words = tone_words(np.random.default_rng(3), seconds=14)
    path = str(tmp_path / "tones.wav")
    sf.write(path, wave, 16000)
    whole = tone_transcriber(60).transcribe(path)  # one chunk
    chunked = tone_transcriber(3).transcribe(path)  # 3-s chunks every 2 s
    assert [w["word"] for w in whole["words"]] == words  # the network reads the tones right
    assert chunked == whole  # words, times and confidences
    # without the join, the chunks' own edges would cut words: several fall inside one
    edges = [2.0 * k for k in range(1, 7)] + [2.0 * k + 3 for k in range(6)]
    inside = [e for e in edges if any(w["start"] < e < w["end"] for w in whole["words"])]
    assert len(inside) >= 3, inside


def test_word_ends_are_clipped_to_the_file(ms_context, tmp_path):
    path = str(tmp_path / "short.wav")  # 50 ms at bin 28 (C): output frames 0, 20, 40 ms
    sf.write(path, (0.3 * np.sin(2 * np.pi * 1400 * np.arange(800) / 16000) * 32767)
             .astype(np.int16), 16000)
    result = tone_transcriber(15).transcribe(path)
    assert result["duration"] == 0.05
    assert [(w["word"], w["start"], w["end"]) for w in result["words"]] == [("C", 0.0, 0.05)]


WORDS = [  # (word, start, end)
    ("ONE", 0.5, 0.8), ("TWO", 0.9, 1.2),           # 0.1-s gap: one cue
    ("THREE", 1.8, 2.1),                             # 0.6-s pause: a new cue
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 2.2, 3.0),       # 32 characters with THREE: still one cue
    ("ELEVENLETTE", 3.1, 3.5),                       # 44 with it: over 42, a new cue
    ("A", 3.6, 10.0), ("B", 10.1, 10.4),             # from 3.1 to 10.4 is over 7 s: new cue
    ("HOUR", 3723.457, 3724.0),                      # 1 h 2 min 3.457 s
]


def test_subtitle_cues_and_documents_follow_srt_and_webvtt():
    words = [{"word": w, "start": s, "end": e, "confidence": 1.0} for w, s, e in WORDS]
    assert [c[2] for c in cues(words)] == [
        "ONE TWO", "THREE ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ELEVENLETTE A", "B", "HOUR"]
    assert subtitles(words, "srt") == (
        "1\n00:00:00,500 --> 00:00:01,200\nONE TWO\n\n"
        "2\n00:00:01,800 --> 00:00:03,000\nTHREE ABCDEFGHIJKLMNOPQRSTUVWXYZ\n\n"
        "3\n00:00:03,100 --> 00:00:10,000\nELEVENLETTE A\n\n"
        "4\n00:00:10,100 --> 00:00:10,400\nB\n\n"
        "5\n01:02:03,457 --> 01:02:04,000\nHOUR\n")
    assert subtitles(words[:2], "vtt") == "WEBVTT\n\n00:00:00.500 --> 00:00:01.200\nONE TWO\n"
    assert subtitles([], "srt") == "" and subtitles([], "vtt") == "WEBVTT\n"


def test_subtitle_names_are_unique_in_input_order():
    names = subtitle_names(["/a/talk.wav", "/b/talk.flac", "/c/Talk.wav", "/d/x.y.wav",
                            "/a/talk.wav"], ".srt")
    assert names == {"/a/talk.wav": "talk.srt", "/b/talk.flac": "talk-2.srt",
                     "/c/Talk.wav": "Talk-3.srt", "/d/x.y.wav": "x.y.srt"}


def test_command_line_options_end_at_a_double_dash():
    assert split_command_line(["--checkpoint", "m.ckpt", "a.wav", "--format=json", "--",
                               "--odd.wav", "-h"]) == (
        ["--checkpoint=m.ckpt", "--format=json"], ["a.wav", "--odd.wav", "-h"])
    assert split_command_line(["a.wav", "-h"]) == (["--help"], [])


def test_folders_are_searched_by_libsndfile_formats_and_manifests_keep_missing_files(tmp_path):
    wave = np.zeros(1600, np.int16)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, fmt, subtype, rate in [("a.aif", "AIFF", "PCM_16", 16000),
                                     ("b.sph", "NIST", "PCM_16", 16000),
                                     ("sub/c.opus", "OGG", "OPUS", 48000),
                                     ("d.wave", "WAV", "PCM_16", 16000),
                                     ("e.raw", "RAW", "PCM_16", 16000)]:
        sf.write(folder / name, np.zeros(rate // 10, np.int16) if rate != 16000 else wave,
                 rate, format=fmt, subtype=subtype)
    (folder / "notes.txt").write_text("not audio")
    found = audio_inputs([str(folder)])
    assert found == [str(folder / n) for n in ("a.aif", "b.sph", "d.wave", "sub/c.opus")]
    assert all(sf.info(p).frames > 0 for p in found)  # libsndfile reads each one it took
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{folder / 'a.aif'},a.txt\ngone.wav,gone.txt\n")  # no transcripts
    assert audio_inputs([str(manifest)]) == [str(folder / "a.aif"), str(tmp_path / "gone.wav")]


@pytest.fixture(scope="module")
def tiny_model(ms_context, tmp_path_factory):
    """A seeded hidden 32 x 2 checkpoint and its MindIR (export.py)."""
    ms = ms_context
    from src.config import load_config
    from src.deepspeech2 import build_network
    root = tmp_path_factory.mktemp("transcribe")
    ms.set_seed(11)
    ms.save_checkpoint(build_network(load_config(["--hidden_size=32", "--num_layers=2"])),
                       str(root / "net.ckpt"))
    run([sys.executable, f"{REPO}/export.py", f"--checkpoint={root}/net.ckpt",
         f"--file_name={root}/net"])
    return root


def transcribe(root, *args, ok=True):
    return run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/net.ckpt",
                "--cpu_fast_conv=false", "--chunk_seconds=2", *map(str, args)], ok=ok, cwd=root)


def test_checkpoint_and_mindir_give_the_same_text_and_bad_files_are_skipped(tiny_model,
                                                                          sample_data):
    root = tiny_model
    wavs = sorted((sample_data / "test_clean" / "wav").iterdir())[:3]
    stereo = root / "stereo 44k.flac"  # another rate, two channels, a space in the name
    import librosa
    data, rate = sf.read(wavs[0], dtype="float32")
    data = librosa.resample(data, orig_sr=rate, target_sr=44100)
    sf.write(stereo, np.stack([data, 0.5 * data], 1), 44100)
    folder = root / "folder"
    folder.mkdir()
    (folder / "a.wav").write_bytes(wavs[1].read_bytes())
    (root / "empty.wav").write_bytes(b"")
    (root / "text.ogg").write_text("not audio")
    (root / "m.csv").write_text(f"{wavs[1]},x.txt\ngone.wav,gone.txt\n")
    common = [*map(str, wavs[:1]), str(folder), str(stereo), "--format=json"]
    by_ckpt = transcribe(root, *common)
    by_mindir = run([sys.executable, f"{REPO}/transcribe.py", "--mindir", f"{root}/net.mindir",
                     "--chunk_seconds=2", *common], cwd=root)
    results = [[json.loads(line) for line in p.stdout.splitlines()] for p in (by_ckpt, by_mindir)]
    assert [r["path"] for r in results[0]] == [str(wavs[0]), str(folder / "a.wav"), str(stereo)]
    assert [r["text"] for r in results[0]] == [r["text"] for r in results[1]]
    first = results[0][0]
    assert first["duration"] == pytest.approx(sf.info(wavs[0]).duration, abs=1e-3)
    assert first["text"] == " ".join(w["word"] for w in first["words"])
    for r in results[0]:
        times = [t for w in r["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and all(0 <= t <= r["duration"] for t in times)

    proc = transcribe(root, wavs[2], "empty.wav", "text.ogg", "missing.flac", "m.csv",
                      "--format=json", "--output=out.jsonl", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    records = [json.loads(line) for line in (root / "out.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == [str(wavs[2]), *(f"{root}/{name}" for name in (
        "empty.wav", "text.ogg", "missing.flac")), str(wavs[1]), f"{root}/gone.wav"]
    assert ["error" in r for r in records] == [False, True, True, True, False, True]
    for r in records[1:4] + records[5:]:
        assert r["path"] in r["error"] and f"skipped: {r['error']}" in proc.stderr
    assert "4 of 6 files could not be read" in proc.stderr

    (root / "--odd.wav").write_bytes(wavs[0].read_bytes())  # after --: a file, not an option
    proc = transcribe(root, "--format=text", folder, "--", "--odd.wav")
    assert proc.stdout.splitlines() == [f"{folder / 'a.wav'}\t{results[0][1]['text']}",
                                        f"{root / '--odd.wav'}\t{results[0][0]['text']}"]

    env = {**os.environ, "LOG_DIR": str(root / "logs")}
    proc = run(["bash", f"{REPO}/scripts/run_transcribe.sh", "net.mindir", str(wavs[0]),
                "--chunk_seconds=2"], cwd=root, env=env)
    assert proc.stdout.splitlines()[1] == results[1][0]["text"]  # one file: the text alone


def test_subtitles_of_several_files_go_to_a_folder(tiny_model, sample_data):
    root = tiny_model
    wavs = sorted((sample_data / "test_clean" / "wav").iterdir())[:2]
    (root / "other").mkdir(exist_ok=True)
    twin = root / "other" / wavs[0].name
    twin.write_bytes(wavs[1].read_bytes())
    proc = transcribe(root, "--format=vtt", "--output=subs", wavs[0], twin)
    stem = wavs[0].stem
    written = [root / "subs" / f"{stem}.vtt", root / "subs" / f"{stem}-2.vtt"]
    assert proc.stdout.splitlines() == [f"{wavs[0]}\t{written[0]}", f"{twin}\t{written[1]}"]
    by_json = [json.loads(line) for line in transcribe(root, "--format=json", wavs[0], twin)
               .stdout.splitlines()]
    for path, result in zip(written, by_json):
        assert path.read_text() == subtitles(result["words"], "vtt")
    one = transcribe(root, "--format=srt", wavs[0])
    assert one.stdout == subtitles(by_json[0]["words"], "srt")
    proc = transcribe(root, "--format=srt", wavs[0], twin, ok=False)
    assert proc.returncode == 1 and "give --output=FOLDER" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("args,message", [
    (["--mindir={d}/net.ckpt"], "cannot load MindIR"),
    (["--checkpoint={d}/net.mindir"], "cannot read checkpoint"),
    (["--checkpoint={d}/net.ckpt", "--mindir={d}/net.mindir"], "exactly one of --checkpoint"),
    (["--checkpoint={d}/net.ckpt"], "no audio given"),
    (["--checkpoint={d}/net.ckpt", "--chunk_seconds=300"], "chunk_seconds=300 is more than 60"),
    (["--checkpoint={d}/net.ckpt", "--output={d}"], "is a folder: --format=text writes one file"),
    (["--checkpoint={d}/net.ckpt", "{d}/no_audio"], "no audio file found in"),
])
def test_wrong_model_files_and_options_get_one_line(tiny_model, args, message):
    (tiny_model / "no_audio").mkdir(exist_ok=True)
    (tiny_model / "no_audio" / "notes.raw").write_bytes(b"\0" * 100)
    extra = ["x.wav"] if "no audio" not in message else []
    proc = run([sys.executable, f"{REPO}/transcribe.py", *[a.format(d=tiny_model) for a in args],
                *extra], ok=False, cwd=tiny_model)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-800:]


def test_help_is_printed_for_both_help_flags():
    for flag in ("-h", "--help"):
        proc = run([sys.executable, f"{REPO}/transcribe.py", flag])
        assert "usage: python transcribe.py (--checkpoint CKPT | --mindir FILE.mindir)" in proc.stdout
