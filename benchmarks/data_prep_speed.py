"""Hours of audio prepared per minute: data_prep/librispeech.py vs extract + one sox per file.

    python benchmarks/data_prep_speed.py --files 2000 --workers 2

Builds a LibriSpeech-format train-clean-100.tar.gz of --files real-speech FLAC files (the
bundled sample's utterances, --concat of them joined per file: the default 4 gives ~12 s files,
LibriSpeech's mean is 12.3 s; under new speaker/chapter ids), then times, in the same run:
  ours:  python data_prep/librispeech.py (streams the archive, decodes in --workers processes)
  field: extract the archive (tar), then one `sox in.flac -r 16000 -b 16 -c 1 out.wav` process
         per file on --workers threads, as deepspeech.pytorch's LibriSpeech script does
and prints one JSON line with both rates and their ratio. Needs the sox binary.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_archive(path, n_files, concat):
    """<path>: n_files FLAC members in the openslr layout; returns hours of audio."""
    import numpy as np
    import soundfile as sf
    with tarfile.open(os.path.join(REPO, "data_prep/sample/sample-train.tar.gz")) as src:
        clips = [sf.read(io.BytesIO(src.extractfile(m).read()), dtype="int16")[0]
                 for m in src if m.name.endswith(".flac")]
    seconds, lines = 0.0, {}
    with tarfile.open(path, "w:gz") as tar:
        for i in range(n_files):
            wave = np.concatenate([clips[(i * concat + k) % len(clips)] for k in range(concat)])
            buf = io.BytesIO()
            sf.write(buf, wave, 16000, format="FLAC", subtype="PCM_16")
            payload = buf.getvalue()
            spk, chap = 1000 + i // 100, 2000 + i // 100
            utt = f"{spk}-{chap}-{i % 100:04d}"
            info = tarfile.TarInfo(f"LibriSpeech/train-clean-100/{spk}/{chap}/{utt}.flac")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            seconds += sf.info(io.BytesIO(payload)).duration
            lines.setdefault((spk, chap), []).append(f"{utt} SOME TRANSCRIPT TEXT")
        for (spk, chap), text in lines.items():
            body = ("\n".join(text) + "\n").encode()
            info = tarfile.TarInfo(f"LibriSpeech/train-clean-100/{spk}/{chap}/{spk}-{chap}.trans.txt")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return seconds / 3600


def field_route(archive, out, workers):
    """Extract everything, then one sox process per FLAC file."""
    subprocess.run(["tar", "xzf", archive, "-C", out], check=True)
    flacs = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files if f.endswith(".flac")]
    wav_dir = os.path.join(out, "wav")
    os.makedirs(wav_dir)

    def convert(flac):
        wav = os.path.join(wav_dir, os.path.basename(flac)[:-5] + ".wav")
        subprocess.run(["sox", flac, "-r", "16000", "-b", "16", "-c", "1", wav], check=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(convert, flacs))
    return len(flacs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concat", type=int, default=4, help="sample clips joined into one file")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        archive = os.path.join(src, "train-clean-100.tar.gz")
        hours = build_archive(archive, a.files, a.concat)
        size_mb = os.path.getsize(archive) / 2**20
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(REPO, "data_prep/librispeech.py"),
                        "--source_dir", src, "--target_dir", os.path.join(tmp, "ours"),
                        "--workers", str(a.workers), "--val_subsets", "--test_clean_subsets",
                        "--test_other_subsets", "--min_duration", "0", "--max_duration", "1e9"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = time.perf_counter() - t0
        field_dir = os.path.join(tmp, "field")
        os.makedirs(field_dir)
        t0 = time.perf_counter()
        n = field_route(archive, field_dir, a.workers)
        field = time.perf_counter() - t0
    print(json.dumps({
        "files": n, "audio_hours": round(hours, 3), "mean_file_s": round(hours * 3600 / n, 2),
        "workers": a.workers,
        "archive_mb": round(size_mb, 1),
        "ours_s": round(ours, 2), "field_s": round(field, 2),
        "ours_hours_per_min": round(hours / ours * 60, 2),
        "field_hours_per_min": round(hours / field * 60, 2), "speedup": round(field / ours, 2)}))


if __name__ == "__main__":
    main()
