"""transcribe.py: words and times from CTC frames, chunking of long recordings with bounded
memory, checkpoint and MindIR giving the same text, bad files named and skipped."""
import json
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run
from src.decoder import GreedyDecoder
from src.text import load_labels
from src.transcription import cut_point, read_chunks, timed_words

LABELS = load_labels(f"{REPO}/labels.json")


def frames_of(path_labels, peak=0.9):
    """Log-probabilities (T, 29) whose argmax follows `path_labels` (characters, '_' blank)."""
    probs = np.full((len(path_labels), len(LABELS)), (1 - peak) / (len(LABELS) - 1))
    for t, ch in enumerate(path_labels):
        probs[t, LABELS.index(ch)] = peak
    return np.log(probs)


def greedy_words(probs, frame_seconds, offset=0.0):
    return timed_words(GreedyDecoder(LABELS).decode(probs), probs, LABELS, frame_seconds, offset)


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


def test_chunks_cut_in_silence_cover_the_file_exactly(tmp_path):
    rate = 8000
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(rate * 23) * 3000).astype(np.int16)  # 23 s of noise
    for gap in (8.5, 16.0):  # quiet 50 ms gaps inside the last quarter of each 10 s window
        wave[int(gap * rate):int((gap + 0.05) * rate)] = 0
    path = tmp_path / "long.wav"
    sf.write(path, wave, rate)
    chunks = list(read_chunks(str(path), rate, chunk_seconds=10))
    offsets = [o for o, _ in chunks]
    assert all(len(w) <= 10 * rate for _, w in chunks)
    assert 8.5 <= offsets[1] <= 8.55 and 16.0 <= offsets[2] <= 16.05
    joined = np.concatenate([w for _, w in chunks])
    np.testing.assert_allclose(joined, wave / 32767, atol=1e-7)  # nothing lost or repeated
    assert cut_point(np.zeros(5, np.float32), rate) == 5  # too short to choose: keep all


def test_memory_of_chunked_reading_does_not_grow_with_the_length(tmp_path):
    rate = 16000
    peaks = []
    for minutes in (1, 6):
        path = tmp_path / f"{minutes}.flac"
        noise = np.random.default_rng(minutes).standard_normal(rate * 60 * minutes) * 3000
        sf.write(path, noise.astype(np.int16), rate)
        del noise
        tracemalloc.start()
        n = sum(len(w) for _, w in read_chunks(str(path), rate, chunk_seconds=15))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert n == rate * 60 * minutes
    # a 6-minute file needs no more than a 1-minute one (a whole 6-min read: ~23 MB float32)
    assert peaks[1] < 1.3 * peaks[0] and peaks[1] < 8 * 15 * rate * 4


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
    common = [*map(str, wavs[:1]), str(folder), str(stereo), "--format=json",
              "--cpu_fast_conv=false", "--chunk_seconds=2"]
    by_ckpt = run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/net.ckpt",
                   *common], cwd=root)
    by_mindir = run([sys.executable, f"{REPO}/transcribe.py", "--mindir", f"{root}/net.mindir",
                     *common], cwd=root)
    results = [[json.loads(line) for line in p.stdout.splitlines()] for p in (by_ckpt, by_mindir)]
    assert [r["path"] for r in results[0]] == [str(wavs[0]), str(folder / "a.wav"), str(stereo)]
    assert [r["text"] for r in results[0]] == [r["text"] for r in results[1]]
    first = results[0][0]
    assert first["duration"] == pytest.approx(sf.info(wavs[0]).duration, abs=1e-3)
    assert first["text"] == " ".join(w["word"] for w in first["words"])
    times = [t for w in first["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times) and all(0 <= t <= first["duration"] + 0.02 for t in times)

    proc = run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/net.ckpt",
                str(wavs[2]), "empty.wav", "text.ogg", "missing.flac", "--output=out.txt"],
               ok=False, cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    for name in ("empty.wav", "text.ogg", "missing.flac"):
        assert f"{root}/{name}" in proc.stderr, name
    assert "3 of 4 files could not be read" in proc.stderr
    assert len((root / "out.txt").read_text().splitlines()) == 1
    env = {**__import__("os").environ, "LOG_DIR": str(root / "logs")}
    proc = run(["bash", f"{REPO}/scripts/run_transcribe.sh", "net.mindir", str(wavs[0]),
                "--chunk_seconds=2"], cwd=root,
               env=env)
    assert proc.stdout.splitlines()[1] == results[1][0]["text"]  # after the "log:" line


@pytest.mark.parametrize("args,message", [
    (["--mindir={d}/net.ckpt"], "cannot load MindIR"),
    (["--checkpoint={d}/net.mindir"], "cannot read checkpoint"),
    (["--checkpoint={d}/net.ckpt", "--mindir={d}/net.mindir"], "exactly one of --checkpoint"),
    (["--checkpoint={d}/net.ckpt"], "no audio given"),
])
def test_wrong_model_files_get_one_line(tiny_model, args, message):
    extra = ["x.wav"] if "no audio" not in message else []
    proc = run([sys.executable, f"{REPO}/transcribe.py", *[a.format(d=tiny_model) for a in args],
                *extra], ok=False, cwd=tiny_model)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-800:]


def test_help_is_printed_for_both_help_flags():
    for flag in ("-h", "--help"):
        proc = run([sys.executable, f"{REPO}/transcribe.py", flag])
        assert "usage: python transcribe.py (--checkpoint CKPT | --mindir FILE.mindir)" in proc.stdout
