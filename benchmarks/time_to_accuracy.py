"""Time to accuracy: how many minutes of training each lever of the course's "how do we make it
faster?" takes to reach a target validation CER, and what it ends at.

    python benchmarks/time_to_accuracy.py                       # every configuration, 10 epochs
    python benchmarks/time_to_accuracy.py --configs before,lr_3e-3 --seeds 1,2 --target 35
    python benchmarks/time_to_accuracy.py --list                # the configurations

Every configuration trains from scratch, with train.py, on the sample corpus's seen voices (the
held-out-voice split of benchmarks/heldout_voices.py: every 4th speaker is never trained on),
validating on their sample-dev utterances after each epoch. The wall clock runs from starting
train.py (compilation and feature extraction included, as a user pays them) to each validation
line in its metrics.jsonl. After training, eval.py decodes (greedy: the network alone) the seen
voices' sample-test utterances and every utterance of the held-out voices with the last
checkpoint. Levers are flags on top of `before` (the quick start until 2026-12-05, spelled out
so that they keep their meaning when the defaults change; with --config_path, that config as it
is); `defaults` is src/default_config.yaml as it is now. `pretrained_freeze` first trains
`before` on half of the seen voices (its cost is reported as pretrain_minutes), then fine-tunes
on the other half with the convolutions and the first LSTM frozen.

Prints one JSON line per (configuration, seed) and writes <out>/results.jsonl (the same lines),
<out>/curves.png (validation CER against wall time, every run in one picture) and <out>/table.md;
results already in <out> are kept (a configuration and seed run again replace theirs), so the
levers can be measured a few at a time.
Measure on a quiet machine: anything else running changes the minutes, not the epochs.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.heldout_voices import speaker, split_manifests  # noqa: E402

# The quick start's settings until 2026-12-05: the baseline every lever changes one thing of.
BEFORE = ["--hidden_size=256", "--num_layers=3", "--batch_size=4", "--accumulate_steps=1",
          "--learning_rate=0.001", "--lr_schedule=hold_anneal", "--warmup_steps=50",
          "--hold_epochs=8", "--lr_anneal=1.1", "--max_grad_norm=400", "--blank_bias=0",
          "--sortagrad=false", "--speed_perturb=true", "--speed_perturb_from_epoch=1",
          "--spec_augment=false", "--gain_perturb=false", "--noise_dir="]

# name -> (flags on top of BEFORE, or None for the current defaults; what it measures)
CONFIGS = {
    "before": ([], "the quick start until 2026-12-05"),
    "defaults": (None, "src/default_config.yaml as it is now"),
    "no_speed": (["--speed_perturb=false"], "speed perturbation off"),
    "speed_from_6": (["--speed_perturb_from_epoch=6"], "speed perturbation from epoch 6 on"),
    "lr_3e-3": (["--learning_rate=0.003"], "peak learning rate x3"),
    "warmup_0": (["--warmup_steps=0"], "no warm-up"),
    "warmup_300": (["--warmup_steps=300"], "warm-up over ~5 epochs"),
    "cosine": (["--lr_schedule=cosine"], "cosine decay from the peak instead of hold+anneal"),
    "one_cycle": (["--lr_schedule=cosine", "--learning_rate=0.003", "--warmup_steps=180"],
                  "one-cycle: warm-up over 30 % of the steps to 3e-3, cosine down"),
    "sortagrad": (["--sortagrad=true"], "first epoch shortest to longest (DS2 paper)"),
    "batch_8": (["--batch_size=8"], "batch 8 (half the steps)"),
    "accum_2": (["--accumulate_steps=2"], "batch 4 x 2 accumulated (effective 8, memory of 4)"),
    "blank_bias_4": (["--blank_bias=4"], "output bias, blank starting at 4 (p(blank) ~ 0.66)"),
    "clip_50": (["--max_grad_norm=50"], "global-norm clipping at 50 instead of 400"),
    "spec_augment": (["--spec_augment=true"], "SpecAugment on"),
    "small_128x2": (["--hidden_size=128", "--num_layers=2"], "LSTM 128 x 2"),
    "small_192x3": (["--hidden_size=192", "--num_layers=3"], "LSTM 192 x 3"),
    "pretrained_freeze": (["--freeze=conv,RNN.lstms.0"],
                          "fine-tune from half the voices, conv + first LSTM frozen"),
    # the blank bias with the levers that might add to it (what chose the defaults)
    "bias4+no_speed": (["--blank_bias=4", "--speed_perturb=false"], "blank bias, speed off"),
    "bias4+speed_from_6": (["--blank_bias=4", "--speed_perturb_from_epoch=6"],
                           "blank bias, speed perturbation from epoch 6"),
    "bias4+cosine": (["--blank_bias=4", "--lr_schedule=cosine"], "blank bias, cosine decay"),
    "bias4+one_cycle": (["--blank_bias=4", "--lr_schedule=cosine", "--learning_rate=0.003",
                         "--warmup_steps=180"], "blank bias, one-cycle to 3e-3"),
}


def flags_of(name, base):
    """train.py overrides of configuration `name`: its flags on top of `base` (BEFORE, or none
    with --config_path), none for `defaults`."""
    extra, _ = CONFIGS[name]
    return [] if extra is None else base + extra


def split(paths, out):
    """The seen voices' sample-dev (validation) and two halves of their training utterances
    (by speaker) for pretrained_freeze; adds their manifest paths to `paths`."""
    from src.manifest import read_manifest, write_manifests
    held = {speaker(e) for e in read_manifest(paths["heldout_voices"])}
    dev = [e for e in read_manifest(paths["dev"]) if speaker(e) not in held]
    train = read_manifest(paths["seen_train"])
    ids = sorted({speaker(e) for e in train})
    half = set(ids[::2])
    parts = {"seen_dev": dev, "half_a": [e for e in train if speaker(e) in half],
             "half_b": [e for e in train if speaker(e) not in half]}
    for name, entries in parts.items():
        paths[name] = os.path.join(out, f"{name}.csv")
        write_manifests([(e.audio, e.transcript, e.duration) for e in entries], paths[name],
                        os.path.join(out, f"{name}.json"), out)
    return paths


def run_train(args, where):
    """train.py `args` into `where` (made anew): (validation records with "minutes" since its
    start, the process's peak memory in MiB, wall minutes)."""
    shutil.rmtree(where, ignore_errors=True)  # this benchmark's own earlier run of it
    os.makedirs(where)
    metrics = os.path.join(where, "log", "metrics.jsonl")
    cmd = [sys.executable, os.path.join(REPO, "train.py"), f"--checkpoint_dir={where}/ckpt",
           f"--log_dir={where}/log", "--tensorboard=false", *args]
    seen, stop = [], threading.Event()
    start = time.monotonic()

    def watch():  # timestamps each validation line as it appears
        done = 0
        while True:
            last = stop.is_set()
            lines = []
            if os.path.exists(metrics):
                with open(metrics, encoding="utf-8") as f:
                    lines = f.read().split("\n")[:-1]  # whole lines only: one may be half written
            for line in lines[done:]:
                record = json.loads(line)
                if "val_cer" in record:
                    seen.append({**record, "minutes": (time.monotonic() - start) / 60})
            done = len(lines)
            if last:
                return
            stop.wait(0.5)

    watcher = threading.Thread(target=watch)
    with open(os.path.join(where, "train.out"), "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = (time.monotonic() - start) / 60
    stop.set()
    watcher.join()
    if proc.returncode:
        sys.exit(f"time_to_accuracy.py: error: train.py failed (exit status {proc.returncode}), "
                 f"see {where}/train.out")
    return seen, usage.ru_maxrss / 1024, wall


def evaluate(where, paths, config):
    """{manifest name: {wer, cer}} of the run's last checkpoint, greedy."""
    from src.checkpoints import list_checkpoints
    ckpt = list_checkpoints(os.path.join(where, "ckpt"))[-1][1]
    cmd = [sys.executable, os.path.join(REPO, "eval.py"), *config, f"--checkpoint={ckpt}",
           "--decode.method=greedy",
           f"--manifests={paths['seen_voices_test']},{paths['heldout_voices']}",
           f"--output_dir={where}/eval"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(where, "eval", "summary.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]
    return {k: {"wer": round(v["wer"], 2), "cer": round(v["cer"], 2)} for k, v in results.items()}


def first_reach(curve, target):
    """The first validation record at or below `target` CER, or None."""
    return next((r for r in curve if r["val_cer"] <= target), None)


def run_config(name, seed, paths, a):
    """Train and evaluate configuration `name` with `seed` (a: the command line); returns its
    result record."""
    where = os.path.join(a.out, f"{name}_seed{seed}")
    config = [f"--config_path={os.path.abspath(a.config_path)}"] if a.config_path else []
    base = [] if a.config_path else BEFORE
    common = [*config, f"--epochs={a.epochs}", f"--seed={seed}",
              f"--val_manifest={paths['seen_dev']}"]
    pretrain = 0.0
    train_manifest = paths["seen_train"]
    extra = []
    if name == "pretrained_freeze":
        first = os.path.join(a.out, f"pretrain_half_a_seed{seed}")
        pretrain = run_train([*base, *common, f"--train_manifest={paths['half_a']}"], first)[2]
        from src.checkpoints import list_checkpoints
        extra = [f"--pre_trained_model_path={list_checkpoints(f'{first}/ckpt')[-1][1]}"]
        train_manifest = paths["half_b"]
    curve, memory, wall = run_train(
        [*flags_of(name, base), *common, f"--train_manifest={train_manifest}", *extra], where)
    reached = first_reach(curve, a.target)
    steps = max(r["step"] for r in curve)
    return {"config": name, "seed": seed, "what": CONFIGS[name][1],
            "flags": CONFIGS[name][0],
            "config_path": a.config_path, "target_cer": a.target,
            "minutes_to_target": round(reached["minutes"], 2) if reached else None,
            "steps_to_target": reached["step"] if reached else None,
            "epochs_to_target": reached["epoch"] if reached else None,
            "epochs": a.epochs, "train_minutes": round(wall, 2),
            "pretrain_minutes": round(pretrain, 2), "steps": steps,
            "ms_per_step": round(60000 * wall / steps, 1), "peak_memory_mib": round(memory),
            "val_cer": [round(r["val_cer"], 2) for r in curve],
            "val_minutes": [round(r["minutes"], 2) for r in curve],
            "final": evaluate(where, paths, config)}


def summary(runs):
    """Mean over the seeds of one configuration (minutes/epochs None unless every seed reached
    the target)."""
    def mean(values):
        return None if None in values else sum(values) / len(values)
    return {"minutes": mean([r["minutes_to_target"] for r in runs]),
            "epochs": mean([r["epochs_to_target"] for r in runs]),
            "seen": mean([r["final"]["seen_voices_test"]["cer"] for r in runs]),
            "held": mean([r["final"]["heldout_voices"]["cer"] for r in runs]),
            "last": mean([r["val_cer"][-1] for r in runs]),
            "ms": mean([r["ms_per_step"] for r in runs]),
            "mib": max(r["peak_memory_mib"] for r in runs)}


def table(rows, target, machine):
    """Markdown: one row per configuration, the mean over its seeds."""
    lines = [f"Target: validation CER <= {target:g} %. {machine}. Greedy decoding.", "",
             "| config | what | seeds | epochs | minutes to target | epochs to target | last "
             "validation CER | final CER seen-voice test / held-out voices | wall ms per step | "
             "peak MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, epochs in dict.fromkeys((r["config"], r["epochs"]) for r in rows):
        runs = [r for r in rows if (r["config"], r["epochs"]) == (name, epochs)]
        m = summary(runs)
        minutes, reached = "not reached", "-"
        if m["minutes"] is not None:
            minutes, reached = f"{m['minutes']:.1f}", f"{m['epochs']:.1f}"
        lines.append(f"| {name} | {runs[0]['what']} | {len(runs)} | {epochs} | {minutes} | "
                     f"{reached} | "
                     f"{m['last']:.1f} % | {m['seen']:.1f} / {m['held']:.1f} % | {m['ms']:.0f} | "
                     f"{m['mib']} |")
    return "\n".join(lines) + "\n"


def plot(rows, target, png):
    """Validation CER against wall minutes, one line per run, written atomically to `png`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 6))
    ends = sorted(r["val_minutes"][-1] for r in rows)
    right = min(ends[-1], 2 * ends[len(ends) // 2]) * 1.05  # a far slower run would squash the rest
    colours = plt.cm.tab20(range(20))
    for i, r in enumerate(rows):
        label = r["config"] if r["seed"] == rows[0]["seed"] else f"{r['config']} (seed {r['seed']})"
        if r["val_minutes"][-1] > right:
            label += f" (to {r['val_minutes'][-1]:.0f} min)"
        wide = {"before": "black", "defaults": "red"}.get(r["config"])
        ax.plot(r["val_minutes"], r["val_cer"], marker=".", label=label,
                color=wide or colours[i % 20], linewidth=2.5 if wide else 1.2)
    ax.set_xlim(0, right)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="wall-clock minutes since train.py started", ylabel="validation CER (%)",
           ylim=(0, 105), title=f"Time to accuracy (target CER {target:g} %)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = png + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)


def machine():
    """"<CPU model>, <n> CPUs" from /proc/cpuinfo (what every figure is quoted with)."""
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    return f"{model}, {os.cpu_count()} CPUs"


def read_rows(path, target):
    """The results of earlier runs into the same --out at the same target (minutes to another
    target do not compare); a configuration run again (same seed and epochs) replaces its row."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["target_cer"] == target]


def write_atomic(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="comma-separated names (--list shows them)")
    p.add_argument("--seeds", default="1", help="comma-separated seeds, each run per config")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--target", type=float, default=35.0, help="validation CER, percent")
    p.add_argument("--data_dir", default=os.path.join(REPO, "data", "sample"))
    p.add_argument("--out", default=os.path.join(REPO, "outputs", "time_to_accuracy"))
    p.add_argument("--holdout_every", type=int, default=4)
    p.add_argument("--config_path", default="",
                   help="a train.py config: the baseline (`before`) the levers change")
    p.add_argument("--list", action="store_true", help="print the configurations and exit")
    p.add_argument("--report", action="store_true",
                   help="only redraw table.md and curves.png from <out>/results.jsonl")
    a = p.parse_args(argv)
    if a.list:
        for name, (extra, what) in CONFIGS.items():
            print(f"{name:18s} {what}: {' '.join(extra) if extra is not None else '(defaults)'}")
        return 0
    results = os.path.join(a.out, "results.jsonl")
    if a.report:
        rows = read_rows(results, a.target)
        if not rows:
            p.error(f"--report: no results at target {a.target:g} in {results}")
        report(rows, a)
        return 0
    names = a.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {', '.join(unknown)} (--list shows them)")
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds: comma-separated integers, not {a.seeds!r}")
    if a.epochs < 1 or not 0 < a.target <= 100:
        p.error("--epochs must be >= 1 and --target in (0, 100]")
    paths, _ = split_manifests(a.data_dir, a.out, a.holdout_every)
    paths["dev"] = os.path.join(a.data_dir, "libri_val_manifest.csv")
    split(paths, a.out)
    where = machine()
    rows = [r for r in read_rows(results, a.target)
            if not (r["config"] in names and r["seed"] in seeds and r["epochs"] == a.epochs)]
    for name in names:
        for seed in seeds:
            rows.append({**run_config(name, seed, paths, a), "machine": where})
            print(json.dumps(rows[-1]), flush=True)
            write_atomic(results, "".join(json.dumps(r) + "\n" for r in rows))
            report(rows, a)
    return 0


def report(rows, a):
    """<out>/table.md and <out>/curves.png of `rows` (the table quotes the first row's machine)."""
    write_atomic(os.path.join(a.out, "table.md"), table(rows, a.target, rows[0]["machine"]))
    plot(rows, a.target, os.path.join(a.out, "curves.png"))
    print(f"table: {os.path.join(a.out, 'table.md')}; picture: {os.path.join(a.out, 'curves.png')}",
          file=sys.stderr)


if __name__ == "__main__":
    from src.errors import UserError
    try:
        sys.exit(main())
    except UserError as err:
        sys.exit(f"time_to_accuracy.py: error: {err} (prepare the sample: "
                 "bash scripts/run_data_prep.sh --sample)")
