"""Hours of audio prepared per minute: data_prep/librispeech.py vs extract + one sox per file.

    python benchmarks/data_prep_speed.py --files 2000 --workers 2

Builds a LibriSpeech-format train-clean-100.tar.gz of --files real-speech FLAC files (the
bundled sample's utterances, --concat of them joined per file: the default 4 gives ~12 s files,
LibriSpeech's mean is 12.3 s; under new speaker/chapter ids), then times, in the same run:
  ours:  python data_prep/librispeech.py (streams the archive, decodes in --workers processes)
  field: deepspeech.pytorch's route to the same product, on --workers threads:
         convert: extract the archive (Python's tarfile, as its script does), then per file one
                  `sox in.flac -r 16000 -b 16 -c 1 out.wav` process and its transcript .txt
         manifest: one `soxi -D` process per wav for its duration (what its create_manifest
                  does through sox.file_info.duration), then a manifest sorted by duration
and prints one JSON line with the rates (medians over --rounds) and both ratios:
"speedup_convert" against the conversion alone, "speedup" against the whole route (archive ->
manifest, like ours).
Needs the sox and soxi binaries.
"""
import argparse
import io
import json
import os
import shutil
import statistics
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
    """deepspeech.pytorch's way; returns (files, seconds to convert, seconds to convert + manifest)."""
    t0 = time.perf_counter()
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    flacs, transcripts = [], {}
    for folder, _, files in os.walk(out):
        for name in files:
            if name.endswith(".flac"):
                flacs.append(os.path.join(folder, name))
            elif name.endswith(".trans.txt"):
                with open(os.path.join(folder, name)) as f:
                    transcripts.update(line.rstrip("\n").split(" ", 1) for line in f)
    wav_dir, txt_dir = os.path.join(out, "wav"), os.path.join(out, "txt")
    os.makedirs(wav_dir)
    os.makedirs(txt_dir)

    def convert(flac):
        utt = os.path.basename(flac)[:-5]
        wav = os.path.join(wav_dir, utt + ".wav")
        subprocess.run(["sox", flac, "-r", "16000", "-b", "16", "-c", "1", wav], check=True)
        with open(os.path.join(txt_dir, utt + ".txt"), "w") as f:
            f.write(transcripts[utt])
        return wav

    def duration(wav):
        proc = subprocess.run(["soxi", "-D", wav], check=True, capture_output=True, text=True)
        return float(proc.stdout), wav

    with ThreadPoolExecutor(workers) as pool:
        wavs = list(pool.map(convert, flacs))
        converted = time.perf_counter() - t0
        samples = sorted(pool.map(duration, wavs))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"root_path": wav_dir, "samples": [
            {"wav_path": w, "transcript_path": w.replace("/wav/", "/txt/")[:-4] + ".txt"}
            for _, w in samples]}, f)
    return len(flacs), converted, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--concat", type=int, default=4, help="sample clips joined into one file")
    p.add_argument("--rounds", type=int, default=1,
                   help="time both routes this many times, alternating; medians are printed")
    a = p.parse_args(argv)
    ours, convert, field = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        archive = os.path.join(src, "train-clean-100.tar.gz")
        hours = build_archive(archive, a.files, a.concat)
        size_mb = os.path.getsize(archive) / 2**20
        for r in range(a.rounds):
            out = os.path.join(tmp, f"ours{r}")
            _settle()
            t0 = time.perf_counter()
            subprocess.run([sys.executable, os.path.join(REPO, "data_prep/librispeech.py"),
                            "--source_dir", src, "--target_dir", out, "--workers", str(a.workers),
                            "--val_subsets", "--test_clean_subsets", "--test_other_subsets",
                            "--min_duration", "0", "--max_duration", "1e9"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ours.append(time.perf_counter() - t0)
            with open(os.path.join(out, "libri_train_manifest.csv")) as f:
                ours_files = sum(1 for _ in f)
            shutil.rmtree(out)
            out = os.path.join(tmp, f"field{r}")
            os.makedirs(out)
            _settle()
            n, seconds_convert, seconds = field_route(archive, out, a.workers)
            convert.append(seconds_convert)
            field.append(seconds)
            shutil.rmtree(out)
            if ours_files != n:
                sys.exit(f"the routes disagree: data_prep made {ours_files} files, the field {n}")
    med = {k: statistics.median(v) for k, v in
           (("ours", ours), ("convert", convert), ("field", field))}
    print(json.dumps({
        "files": n, "audio_hours": round(hours, 3), "mean_file_s": round(hours * 3600 / n, 2),
        "workers": a.workers, "archive_mb": round(size_mb, 1), "rounds": a.rounds,
        "ours_s": round(med["ours"], 2), "field_convert_s": round(med["convert"], 2),
        "field_s": round(med["field"], 2),
        "ours_hours_per_min": round(hours / med["ours"] * 60, 2),
        "field_convert_hours_per_min": round(hours / med["convert"] * 60, 2),
        "field_hours_per_min": round(hours / med["field"] * 60, 2),
        "speedup_convert": round(med["convert"] / med["ours"], 2),
        "speedup": round(med["field"] / med["ours"], 2),
        "rounds_s": {"ours": [round(x, 2) for x in ours],
                     "field_convert": [round(x, 2) for x in convert],
                     "field": [round(x, 2) for x in field]}}))


def _settle():
    """Flush the previous phase's file writes so that neither route pays for the other's."""
    os.sync()
    time.sleep(1)


if __name__ == "__main__":
    main()
