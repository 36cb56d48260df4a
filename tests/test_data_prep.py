"""data_prep/librispeech.py on small archives of the real LibriSpeech layout (real FLAC)."""
import io
import json
import os
import sys
import tarfile

import numpy as np
import soundfile as sf

from conftest import REPO, prep_command, run

SR = 16000


def flac_bytes(seconds, sr=SR, seed=0):
    wave = (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 2000).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), wave


def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_archive(path, subset, utts, extra=None, trans_extra=""):
    """utts: {utt_id: (seconds, transcript, sample_rate)} -> <subset>.tar.gz; returns waves."""
    waves = {}
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "LibriSpeech/README.TXT", b"readme")
        by_chapter = {}
        for utt, (sec, text, sr) in sorted(utts.items()):
            spk, chap, _ = utt.split("-")
            payload, waves[utt] = flac_bytes(sec, sr, seed=len(waves))
            add(tar, f"LibriSpeech/{subset}/{spk}/{chap}/{utt}.flac", payload)
            if text is not None:
                by_chapter.setdefault((spk, chap), []).append(f"{utt} {text}")
        for (spk, chap), lines in by_chapter.items():
            body = "\n".join(lines) + "\n" + trans_extra
            add(tar, f"LibriSpeech/{subset}/{spk}/{chap}/{spk}-{chap}.trans.txt", body.encode())
        for fn in extra or []:
            fn(tar)
    return waves


def prep(src, out, *extra, ok=True):
    return run(prep_command(src, out, "--workers", "2", "--train_subsets", "train-clean-100",
                "--val_subsets", "dev-clean", "--test_clean_subsets", "test-clean",
                "--test_other_subsets", "test-other", *extra), ok=ok)


def test_archives_to_splits_and_manifests(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    train = make_archive(src / "train-clean-100.tar.gz", "train-clean-100", {
        "19-198-0001": (2.0, "HELLO THERE", SR),
        "19-198-0002": (1.5, "IT'S A TEST", SR),
        "26-495-0000": (3.0, "THE LAST ONE", 22050),  # resampled
        "26-495-0001": (0.5, "TOO SHORT", SR),  # under the 1 s train filter
    })
    make_archive(src / "test-clean.tar.gz", "test-clean", {"61-70968-0000": (1.2, "CLEAN", SR)})
    make_archive(src / "test-other.tar.gz", "test-other", {"367-130732-0000": (1.1, "OTHER", SR)})
    proc = prep(src, out)
    assert "train: 3 utterances" in proc.stdout and "1 duration" in proc.stdout

    lines = (out / "libri_train_manifest.csv").read_text().splitlines()
    durations = [float(line.split(",")[2]) for line in lines]
    assert durations == sorted(durations) and len(lines) == 3  # sorted by duration
    wav, txt, _ = lines[0].split(",")
    assert os.path.isabs(wav) and wav.endswith("train/wav/19-198-0002.wav")
    assert open(txt).read() == "IT'S A TEST"
    data, sr = sf.read(wav, dtype="int16")
    assert sr == SR and data.ndim == 1 and sf.info(wav).subtype == "PCM_16"
    np.testing.assert_array_equal(data, train["19-198-0002"])  # lossless copy of the FLAC
    ref = io.BytesIO()
    sf.write(ref, train["19-198-0002"], SR, format="WAV", subtype="PCM_16")
    assert open(wav, "rb").read() == ref.getvalue()  # the very file libsndfile would write
    resampled = sf.info(str(out / "train/wav/26-495-0000.wav"))
    assert resampled.samplerate == SR and abs(resampled.frames - 3 * SR) <= 1

    manifest = json.loads((out / "libri_test_other_manifest.json").read_text())
    assert manifest["root_path"] == str(out / "test_other")
    assert manifest["samples"] == [{"wav_path": "wav/367-130732-0000.wav",
                                    "transcript_path": "txt/367-130732-0000.txt",
                                    "duration": 1.1}]
    assert "OTHER" not in (out / "libri_test_clean_manifest.csv").read_text()

    before = {p: os.path.getmtime(p) for p in (out / "train/wav").iterdir()}
    csv_before = (out / "libri_train_manifest.csv").read_bytes()
    prep(src, out)  # a re-run skips finished files and writes the same manifests
    assert {p: os.path.getmtime(p) for p in (out / "train/wav").iterdir()} == before
    assert (out / "libri_train_manifest.csv").read_bytes() == csv_before


def test_flac_output_copies_librispeech_files_and_converts_the_rest(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    make_archive(src / "train-clean-100.tar.gz", "train-clean-100", {
        "19-198-0001": (2.0, "HELLO THERE", SR), "26-495-0000": (1.5, "RESAMPLED", 22050)})
    with tarfile.open(src / "train-clean-100.tar.gz") as tar:
        original = {os.path.basename(m.name): tar.extractfile(m).read() for m in tar
                    if m.name.endswith(".flac")}
    prep(src, out, "--audio_format", "flac")
    lines = (out / "libri_train_manifest.csv").read_text().splitlines()
    assert [line.split(",")[0].rsplit("/", 2)[1:] for line in lines] == [
        ["flac", "26-495-0000.flac"], ["flac", "19-198-0001.flac"]]
    # already 16 kHz 16-bit mono FLAC: the very bytes of the archive, no re-encoding
    assert (out / "train/flac/19-198-0001.flac").read_bytes() == original["19-198-0001.flac"]
    info = sf.info(str(out / "train/flac/26-495-0000.flac"))
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_16", SR)
    assert abs(info.frames - 1.5 * SR) <= 1 and float(lines[0].split(",")[2]) == 1.5
    assert not (out / "train/wav").exists()


def test_bad_input_is_reported_by_name_and_the_rest_goes_on(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()

    def evil(tar):
        payload, _ = flac_bytes(1.0)
        add(tar, "../evil-1-0001.flac", payload)
        add(tar, "/tmp/abs-1-0001.flac", payload)
        link = tarfile.TarInfo("LibriSpeech/train-clean-100/9/9/9-9-0009.flac")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        add(tar, "LibriSpeech/train-clean-100/7/7/7-7-0001.flac", b"fLaC garbage")

    make_archive(src / "train-clean-100.tar.gz", "train-clean-100", {
        "1-2-0001": (1.5, "GOOD ONE", SR),
        "1-2-0002": (1.5, "BAD-CHARACTER", SR),
        "1-2-0003": (1.5, None, SR),  # audio, no transcript line
    }, extra=[evil], trans_extra="1-2-0004 NO AUDIO FOR THIS LINE\n")
    proc = prep(src, out)
    assert "train: 1 utterances" in proc.stdout
    report = (out / "skipped_train.txt").read_text() + (out / "skipped_archives.txt").read_text()
    for needle in ("'../evil-1-0001.flac'\trefused: '..' in path",
                   "'/tmp/abs-1-0001.flac'\trefused: absolute path",
                   "9-9-0009.flac'\trefused: link", "7-7-0001\tunreadable audio",
                   "1-2-0002\tcharacter outside labels.json", "1-2-0003\taudio with no transcript",
                   "1-2-0004\ttranscript line with no audio"):
        assert needle in report, needle
    assert not (tmp_path / "evil-1-0001.flac").exists() and not os.path.exists("/tmp/abs-1-0001.wav")
    assert prep(src, out, "--strict", ok=False).returncode == 1


def test_truncated_archive_and_nothing_usable(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    make_archive(src / "train-clean-100.tar.gz", "train-clean-100",
                 {f"5-6-{i:04d}": (1.2, "WORDS", SR) for i in range(6)})
    data = (src / "train-clean-100.tar.gz").read_bytes()
    (src / "train-clean-100.tar.gz").write_bytes(data[: len(data) // 2])
    proc = prep(src, out, ok=False)
    assert "truncated or corrupt archive" in (out / "skipped_archives.txt").read_text()
    # the chapter's transcript file comes after its audio in the archive: the cut loses it, so
    # nothing is usable, which is an error (exit 1), with the archive named in the report
    assert proc.returncode == 1 and "no usable utterance was produced" in proc.stderr
    assert "1 truncated or corrupt archive" in proc.stdout
    assert not (out / "libri_train_manifest.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = prep(empty, tmp_path / "out2", ok=False)
    assert proc.returncode == 1 and "no usable utterance" in proc.stderr


def test_download_resumes_and_checks_md5(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from data_prep import librispeech
    served = tmp_path / "served"
    served.mkdir()
    payload = os.urandom(300_000)
    (served / "dev-clean.tar.gz").write_bytes(payload)
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "dev-clean.tar.gz.part").write_bytes(payload[:1000])  # an interrupted download
    url = "file://" + str(served) + "/{subset}.tar.gz"
    try:
        librispeech.download("dev-clean", str(dest), url)
        raise AssertionError("MD5 mismatch not detected")
    except librispeech.DownloadError as err:
        assert "MD5" in str(err)
    assert not (dest / "dev-clean.tar.gz").exists()
    (served / "my-subset.tar.gz").write_bytes(payload)  # no published MD5: accepted as is
    path = librispeech.download("my-subset", str(dest), url)
    assert open(path, "rb").read() == payload


def _children(pid):
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_killed_run_resumes_to_identical_outputs(tmp_path):
    import signal
    import subprocess
    import time

    src = tmp_path / "src"
    src.mkdir()
    make_archive(src / "train-clean-100.tar.gz", "train-clean-100",
                 {f"{1 + i // 50}-{7 + i // 50}-{i:04d}": (1.0 + (i % 7) * 0.3, "SOME WORDS", 22050)
                  for i in range(300)})  # resampling makes each file slow enough to interrupt
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    prep(src, ref)
    cmd = prep_command(src, crash, "--workers", "2", "--train_subsets", "train-clean-100",
                       "--val_subsets", "--test_clean_subsets", "--test_other_subsets")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    wav_dir = crash / "train" / "wav"
    while not (wav_dir.is_dir() and len(list(wav_dir.iterdir())) > 30):
        assert proc.poll() is None and time.time() < deadline, "finished before the kill"
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers, "no decoding worker found"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crash / "libri_train_manifest.csv").exists()
    deadline = time.time() + 10  # the orphaned decoding workers notice and exit
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert time.time() < deadline, "worker processes outlived the killed run"
        time.sleep(0.1)
    run(cmd)
    assert sorted(p.name for p in wav_dir.iterdir()) == sorted(
        p.name for p in (ref / "train" / "wav").iterdir())  # no leftovers, nothing missing
    for p in wav_dir.iterdir():
        assert p.read_bytes() == (ref / "train" / "wav" / p.name).read_bytes(), p.name
    strip = lambda text: text.replace(str(ref), "").replace(str(crash), "")  # noqa: E731
    assert strip((crash / "libri_train_manifest.csv").read_text()) == \
        strip((ref / "libri_train_manifest.csv").read_text())


def test_full_disk_stops_with_one_line_and_keeps_finished_files_valid(tmp_path):
    """A per-file size limit (RLIMIT_FSIZE) makes every write beyond 40 kB fail as on a full disk."""
    import resource
    import signal
    import subprocess

    from conftest import REPO
    src, out, ref = tmp_path / "src", tmp_path / "out", tmp_path / "ref"
    src.mkdir()
    utts = {f"1-2-{i:04d}": (0.5, "SHORT ONE", SR) for i in range(6)}  # 16 kB wav each
    utts.update({f"3-4-{i:04d}": (2.0, "A LONGER ONE", SR) for i in range(4)})  # 64 kB each
    make_archive(src / "train-clean-100.tar.gz", "train-clean-100", utts)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    cmd = prep_command(src, out, "--workers", "2", "--train_subsets", "train-clean-100",
                       "--val_subsets", "--test_clean_subsets", "--test_other_subsets")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_file_size)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "librispeech.py: error: cannot write " in errors[0], proc.stderr
    assert "disk full" in errors[0]
    assert "Traceback" not in proc.stderr
    wavs = sorted((out / "train" / "wav").iterdir())
    assert wavs and all(p.suffix == ".wav" for p in wavs)  # no temporary file left behind
    for p in wavs:  # what was written is complete
        data, sr = sf.read(p, dtype="int16")
        assert sr == SR and len(data) == 8000, p.name
    assert not (out / "libri_train_manifest.csv").exists()
    # with space again, the same command finishes and equals an uninterrupted run
    run(cmd)
    run(cmd[:5] + [str(ref)] + cmd[6:])
    for p in (ref / "train" / "wav").iterdir():
        assert (out / "train" / "wav" / p.name).read_bytes() == p.read_bytes()
    assert len(list((out / "train" / "wav").iterdir())) == 10


def test_target_folder_with_a_comma_gives_manifests_the_loader_reads(tmp_path):
    out = tmp_path / "x,y" / 's "q"'
    run(prep_command(os.path.join(REPO, "data_prep", "sample"), out, "--train_subsets",
                     "sample-dev", "--val_subsets", "--test_clean_subsets", "--test_other_subsets"))
    sys.path.insert(0, REPO)
    from src.config import load_config
    from src.dataset import load_utterances
    from src.text import make_encoder
    cfg = load_config([])
    utts, report = load_utterances(str(out / "libri_train_manifest.csv"), cfg.features, make_encoder(cfg))
    assert len(utts) == 24 and not report
    assert all(u.audio.startswith(str(out)) and os.path.isfile(u.audio) for u in utts)
