"""Synthesise the bundled sample corpus: LibriSpeech-format archives spoken by TTS voices.

    python data_prep/make_sample_corpus.py --out_dir data_prep/sample

Writes <out_dir>/{sample-train,sample-dev,sample-test}.tar.gz, each unpacking to
LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt
(16 kHz mono 16-bit FLAC, uppercase transcripts with apostrophes), exactly the layout of the
openslr archives, so the sample goes through the same data_prep path as real LibriSpeech.

How it is made (reproducible: fixed seed, fixed voice list; the tools' versions may change the
audio slightly): sentences come from a small seeded grammar; each subset has its own sentences
(no sentence appears in two subsets); every speaker is one TTS voice (espeak-ng accents and
variants, flite voices, festival's kal voice) with its own SoX pitch shift and tempo. Needs the
Debian packages espeak-ng, flite, festival and sox (the committed archives need none of them).
"""
import argparse
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile

import soundfile as sf

SUBSETS = {"sample-train": 330, "sample-dev": 24, "sample-test": 60}
SAMPLE_RATE = 16000

SUBJECTS = ["the old man", "a young woman", "my brother", "her sister", "the doctor", "our teacher",
            "the farmer", "a small child", "the captain", "his father", "the king", "the queen",
            "my friend", "the soldier", "a stranger", "the baker", "the driver", "your mother",
            "the little girl", "the tall boy", "the village priest", "a quiet student",
            "the merchant", "the sailor", "john", "mary", "the old woman", "the nurse"]
VERBS = ["found", "saw", "carried", "opened", "painted", "bought", "sold", "lost", "watched",
         "cleaned", "brought", "wanted", "held", "fixed", "took", "left", "moved", "touched",
         "kept", "needed", "followed", "counted", "wrote", "read", "built", "broke", "hid"]
OBJECTS = ["a red box", "the heavy door", "seven letters", "the green apple", "a long rope",
           "the wooden chair", "an empty cup", "the small boat", "a silver key", "the white horse",
           "a bright lamp", "the black cat", "two old books", "the broken window", "a warm coat",
           "the yellow flowers", "a large map", "the evening paper", "a basket of bread",
           "the blue bottle", "three white stones", "the garden gate", "a sharp knife",
           "the stone bridge", "a fresh loaf", "the iron bell", "a golden ring", "the farm house"]
PLACES = ["near the river", "in the morning", "before dinner", "under the table", "at the market",
          "by the fire", "after the storm", "in the kitchen", "on the hill", "behind the house",
          "during the night", "at the station", "in the forest", "across the street",
          "beside the church", "on sunday", "in the garden", "at noon", "by the sea",
          "near the school", "in the dark", "at the end of the day"]
ADJECTIVES = ["happy", "tired", "angry", "quiet", "cold", "hungry", "afraid", "ready", "late",
              "busy", "sure", "glad", "sorry", "proud", "careful", "young", "strong", "kind"]
QUESTIONS = ["where is", "who took", "why did you move", "when will we see", "what happened to",
             "did anyone find", "have you seen"]
CLAUSES = ["because it was raining", "but nobody answered", "and then it was gone",
           "while the dog was sleeping", "so we went home", "and everyone laughed",
           "although it was late", "before the sun went down", "when the bell rang"]


def sentence(rng):
    """One sentence from the grammar (lower case; the archive writer upper-cases it)."""
    s, v, o, p = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES))
    form = rng.randrange(7)
    if form == 0:
        return f"{s} {v} {o} {p}"
    if form == 1:
        return f"{s} {v} {o} {rng.choice(CLAUSES)}"
    if form == 2:
        return f"{rng.choice(QUESTIONS)} {o}"
    if form == 3:
        neg = rng.choice(["wasn't", "isn't", "won't be", "couldn't be", "didn't look"])
        return f"{s} {neg} {rng.choice(ADJECTIVES)} {p}"
    if form == 4:
        return f"{p} {s} {v} {o}"
    if form == 5:
        who = rng.choice(["i", "we", "they", "you"])
        aux = rng.choice(["don't", "can't", "won't", "didn't", "shouldn't"])
        return f"{who} {aux} know why {s} {v} {o}"
    return f"{s}'s friend {v} {o} {p}"


def voices():
    """Speaker list: (engine, voice, pitch shift in cents, tempo factor)."""
    espeak = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029",
              "en-gb-x-gbcwmd"]
    variants = ["m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5"]
    rng = random.Random(7)
    out = []
    for accent in espeak:
        for variant in rng.sample(variants, 3):
            out.append(("espeak-ng", f"{accent}+{variant}", rng.choice([-150, 0, 150]),
                        rng.choice([0.9, 1.0, 1.1])))
    for voice in ["kal16", "awb", "rms", "slt"]:
        for shift in (-200, 0, 250):
            out.append(("flite", voice, shift, rng.choice([0.95, 1.0, 1.1])))
    for shift in (-250, 0, 200):
        out.append(("festival", "kal", shift, 1.0))
    return out


def synthesize(engine, voice, text, wav_path):
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", "160", "-w", wav_path, text]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elif engine == "flite":
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", wav_path], check=True)
    else:
        subprocess.run(["text2wave", "-o", wav_path], input=text.encode(), check=True,
                       stdout=subprocess.DEVNULL)


def render(speaker, text, tmp):
    """16 kHz mono int16 waveform of `text` spoken by `speaker` (TTS, then SoX effects)."""
    import sox  # pysox drives the sox binary
    engine, voice, cents, tempo = speaker
    raw = os.path.join(tmp, "raw.wav")
    synthesize(engine, voice, text, raw)
    tfm = sox.Transformer()
    tfm.set_globals(dither=False)  # dither is random: the corpus must be reproducible
    tfm.set_output_format(rate=SAMPLE_RATE, bits=16, channels=1)
    for _ in range(2):  # trim silence at the start, then (reversed) at the end
        tfm.silence(location=1, silence_threshold=0.5, min_silence_duration=0.05)
        tfm.reverse()
    tfm.pad(0.15, 0.15)  # even 150 ms margins
    if cents:
        tfm.pitch(cents / 100)
    if tempo != 1.0:
        tfm.tempo(tempo, audio_type="s")
    return tfm.build_array(input_filepath=raw).astype("int16")


def add_bytes(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(payload))


def write_subset(out_dir, subset, sentences, speakers, order, tmp):
    """<out_dir>/<subset>.tar.gz in the openslr layout; sentence n goes to speakers[order[n % ..]]."""
    chapters = {}
    for n, text in enumerate(sentences):
        spk_index = order[n % len(order)]
        speaker_id = 100 + spk_index
        chapter_id = 1000 + 10 * spk_index + list(SUBSETS).index(subset)
        chapters.setdefault((speaker_id, chapter_id, spk_index), []).append(text)
    path = os.path.join(out_dir, f"{subset}.tar.gz")
    seconds = 0.0
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "LibriSpeech/README.TXT",
                  b"Synthetic LibriSpeech-format sample (TTS voices), made by "
                  b"data_prep/make_sample_corpus.py\n")
        for (spk, chap, spk_index), texts in sorted(chapters.items()):
            folder = f"LibriSpeech/{subset}/{spk}/{chap}"
            lines = []
            for u, text in enumerate(texts):
                utt = f"{spk}-{chap}-{u:04d}"
                wave = render(speakers[spk_index], text, tmp)
                seconds += len(wave) / SAMPLE_RATE
                buf = io.BytesIO()
                sf.write(buf, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                add_bytes(tar, f"{folder}/{utt}.flac", buf.getvalue())
                lines.append(f"{utt} {text.upper()}")
            add_bytes(tar, f"{folder}/{spk}-{chap}.trans.txt", ("\n".join(lines) + "\n").encode())
    return path, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default=os.path.join(os.path.dirname(__file__), "sample"))
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    speakers = voices()
    needed = sum(SUBSETS.values())
    seen, pool = set(), []
    while len(pool) < needed:
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            pool.append(s)
    os.makedirs(args.out_dir, exist_ok=True)
    start = 0
    with tempfile.TemporaryDirectory() as tmp:
        for subset, count in SUBSETS.items():
            sub_rng = random.Random(f"{args.seed}-{subset}")
            order = list(range(len(speakers)))
            sub_rng.shuffle(order)
            path, seconds = write_subset(args.out_dir, subset, pool[start:start + count],
                                         speakers, order, tmp)
            start += count
            print(f"{path}: {count} utterances, {seconds / 60:.1f} min, "
                  f"{os.path.getsize(path) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
