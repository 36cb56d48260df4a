"""Does augmentation help on voices the model never heard? Train on some of the sample corpus's
voices, evaluate on the others, once per augmentation setting (same epochs, same seed).

    python benchmarks/heldout_voices.py --epochs 10 --out outputs/heldout_voices

The sample corpus (bash scripts/run_data_prep.sh --sample) has 36 TTS voices, LibriSpeech
speaker ids 100-135. Every --holdout_every-th speaker (103, 107, ..., 135 by default: 9 voices,
each engine represented) is held out: none of its utterances is trained on, and all of them
(train, dev and test subsets; every sentence of the corpus is spoken once, so these sentences
are new too) form heldout_voices.csv. The other voices' training utterances train the model;
their test utterances (seen_voices_test.csv) show the gap. Greedy decoding, so the network alone
is measured. Prints one JSON line per setting and writes <out>/table.md and <out>/results.json.
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SPEED = ["--speed_perturb=true", "--speed_perturb_from_epoch=1"]  # from the first epoch, as measured
SETTINGS = {
    "none": [],
    "spec": ["--spec_augment=true"],
    "speed": SPEED,
    "gain": ["--gain_perturb=true"],
    "speed+gain": [*SPEED, "--gain_perturb=true"],
    "speed+spec": [*SPEED, "--spec_augment=true"],
    "speed+gain+spec": [*SPEED, "--gain_perturb=true", "--spec_augment=true"],
}


def speaker(entry):
    """LibriSpeech speaker id from <speaker>-<chapter>-<utt>.<ext>."""
    return int(os.path.basename(entry.audio).split("-")[0])


def split_manifests(data_dir, out, every):
    """Write seen_train.csv, seen_voices_test.csv and heldout_voices.csv; returns their paths
    and the held-out speaker ids."""
    from src.manifest import read_manifest, write_manifests
    read = {name: read_manifest(os.path.join(data_dir, f"libri_{name}_manifest.csv"))
            for name in ("train", "val", "test_clean")}
    ids = sorted({speaker(e) for entries in read.values() for e in entries})
    held = set(ids[every - 1::every])
    os.makedirs(out, exist_ok=True)
    parts = {"seen_train": [e for e in read["train"] if speaker(e) not in held],
             "seen_voices_test": [e for e in read["test_clean"] if speaker(e) not in held],
             "heldout_voices": [e for entries in read.values() for e in entries
                                if speaker(e) in held]}
    paths = {}
    for name, entries in parts.items():
        paths[name] = os.path.join(out, f"{name}.csv")
        write_manifests([(e.audio, e.transcript, e.duration) for e in entries], paths[name],
                        os.path.join(out, f"{name}.json"), out)
    return paths, sorted(held)


def run_setting(name, flags, paths, out, epochs):
    """Train with `flags` (every augmentation off unless named), evaluate both test manifests;
    returns {manifest name: {wer, cer, utterances}}."""
    from src.augment import ALL_OFF
    from src.checkpoints import list_checkpoints
    where = os.path.join(out, name.replace("+", "_"))
    train = [sys.executable, os.path.join(REPO, "train.py"), f"--epochs={epochs}",
             f"--train_manifest={paths['seen_train']}", "--val_manifest=",
             f"--checkpoint_dir={where}/ckpt", f"--log_dir={where}/log", *ALL_OFF, *flags]
    subprocess.run(train, check=True, stdout=subprocess.DEVNULL)
    ckpt = list_checkpoints(os.path.join(where, "ckpt"))[-1][1]  # the last one written
    evaluate = [sys.executable, os.path.join(REPO, "eval.py"), f"--checkpoint={ckpt}",
                f"--manifests={paths['heldout_voices']},{paths['seen_voices_test']}",
                f"--output_dir={where}/eval"]
    subprocess.run(evaluate, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(where, "eval", "summary.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]
    return {k: {"wer": v["wer"], "cer": v["cer"], "utterances": v["utterances"]}
            for k, v in results.items()}


def table(rows, held, epochs):
    lines = [f"Held-out voices {', '.join(map(str, held))}; {epochs} epochs; greedy decoding.", "",
             "| augmentation | held-out voices WER / CER | seen voices (test) WER / CER |",
             "|---|---|---|"]
    for name, res in rows.items():
        h, s = res["heldout_voices"], res["seen_voices_test"]
        lines.append(f"| {name} | {h['wer']:.1f} / {h['cer']:.1f} % | "
                     f"{s['wer']:.1f} / {s['cer']:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=os.path.join(REPO, "data", "sample"))
    p.add_argument("--out", default=os.path.join(REPO, "outputs", "heldout_voices"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--holdout_every", type=int, default=4)
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated, of {', '.join(SETTINGS)}")
    a = p.parse_args(argv)
    names = a.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"--settings: unknown {', '.join(unknown)}")
    paths, held = split_manifests(a.data_dir, a.out, a.holdout_every)
    rows = {}
    for name in names:
        rows[name] = run_setting(name, SETTINGS[name], paths, a.out, a.epochs)
        print(json.dumps({"setting": name, **rows[name]}), flush=True)
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"held_out_speakers": held, "epochs": a.epochs, "results": rows}, f, indent=2)
    with open(os.path.join(a.out, "table.md"), "w", encoding="utf-8") as f:
        f.write(table(rows, held, a.epochs))
    print(f"table: {os.path.join(a.out, 'table.md')}")


if __name__ == "__main__":
    from src.errors import UserError
    try:
        main()
    except UserError as err:
        sys.exit(f"heldout_voices.py: error: {err} (prepare the sample: "
                 "bash scripts/run_data_prep.sh --sample)")
