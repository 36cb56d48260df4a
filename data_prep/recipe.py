"""The LibriSpeech recipe: download -> data prep -> LM -> training -> averaging -> LM weights ->
evaluation -> RESULTS.md, in numbered stages, each skipped once done and resumed when cut short.

    python data_prep/recipe.py [--stage N] [--stop_stage M] [--subset=100|460|960] [--key=value ...]

Run through scripts/run_librispeech.sh, whose --help lists the stages and options; the recipe,
its folders and what each stage writes: docs/librispeech.md. Every stage runs the repository's
own tools (data_prep/*.py, the training scripts, average_checkpoints.py, tune_lm.py, eval.py),
so the recipe adds only the order, the folders and the bookkeeping. A stage is done when its
outputs exist and <exp_dir>/.done/stage<N> (written atomically at its end) records the settings
it ran with; a stage run again (cut short, or its settings changed) makes the stages that read
its outputs run again too (READERS).
"""
import datetime
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from src.config import ConfigError, load_config, split_arguments, to_dict  # noqa: E402  (path fix)
from src.errors import UserError  # noqa: E402

PROG = "run_librispeech.sh"
STAGES = ("download", "data_prep", "lm", "train", "average", "tune_lm", "eval", "results")
# The stages that read a stage's outputs. A stage that runs again makes these (and theirs) run
# again. Downloads have none: the published files never change, and the stages reading them
# name the files they need in their own settings (subsets, LM).
READERS = {0: (), 1: (3, 5, 6), 2: (5,), 3: (4,), 4: (5, 6), 5: (6,), 6: (7,), 7: ()}
TRAIN_SUBSETS = {"100": ["train-clean-100"],
                 "460": ["train-clean-100", "train-clean-360"],
                 "960": ["train-clean-100", "train-clean-360", "train-other-500"]}
EVAL_SUBSETS = {"val": "dev-clean", "test_clean": "test-clean", "test_other": "test-other"}
LMS = {"3-gram.pruned.3e-7": "3-gram.pruned.3e-7.arpa.gz",  # SLR11's, the zoo config's LM
       "lm-norm": "librispeech-lm-norm.txt.gz"}             # SLR11's LM text: a 3-gram built here
# The config sections each config-reading stage depends on: a change elsewhere (the decoder for
# training, the optimizer for scoring) does not make it run again.
READS = {3: ("seed", "mode", "labels_path", "features", "model", "data", "augment", "train"),
         5: ("labels_path", "features", "model", "data", "decode", "tune_lm"),
         6: ("labels_path", "features", "model", "data", "decode", "eval")}
# ... but for the keys that change how fast or how verbosely a stage runs, not its outputs: a
# change of them alone does not make any stage run again.
SPEED_ONLY = {"data": ("read_threads", "num_parallel_workers"),
              "train": ("tensorboard", "log_interval", "check_data"), "decode": ("workers",)}
ENTRIES = {3: "train", 5: "tune_lm", 6: "eval"}
# Config keys whose values the recipe sets itself (its folders, the tuned decoder): the leaf
# names, as --key=value or --section.key=value would give them.
OWNED = {"train_manifest", "val_manifest", "checkpoint_dir", "log_dir", "resume",
         "pre_trained_model_path", "checkpoint", "pretrain_ckpt", "manifests", "manifest",
         "output_dir", "lm_path", "method", "alpha", "beta", "distribute"}


class UsageError(UserError):
    """A bad command line (exit status 2, as the shell scripts' usage errors)."""


class RecipeError(UserError):
    """A stage that cannot run or failed (exit status 1)."""


def _int(low, high=None):
    def parse(name, raw):
        if not re.fullmatch(r"\d+", raw) or int(raw) < low or (high is not None and int(raw) > high):
            span = f"from {low} to {high}" if high is not None else f">= {low}"
            raise UsageError(f"--{name} must be a whole number {span}, got '{raw}'")
        return int(raw)
    return parse


def _choice(*allowed):
    def parse(name, raw):
        if raw not in allowed:
            raise UsageError(f"--{name} must be one of {', '.join(allowed)}, got '{raw}'")
        return raw
    return parse


def _bool(name, raw):
    if raw.lower() not in ("true", "false"):
        raise UsageError(f"--{name} must be true or false, got '{raw}'")
    return raw.lower() == "true"


def _path(name, raw):
    if not raw:
        raise UsageError(f"--{name} needs a value")
    return os.path.abspath(os.path.expanduser(raw))


def _text(name, raw):
    return raw


OPTIONS = {  # recipe option -> (parser, default); anything else is a config override
    "stage": (_int(0, 7), 0),
    "stop_stage": (_int(0, 7), 7),
    "subset": (_choice(*TRAIN_SUBSETS), "100"),
    "config_path": (_path, os.path.join(REPO, "src", "configs", "librispeech_zoo.yaml")),
    "data_dir": (_path, os.path.join(REPO, "data", "librispeech")),
    "exp_dir": (_path, ""),
    "mirror": (_text, ""),
    "verify_md5": (_bool, True),
    "lm": (_choice(*LMS), "3-gram.pruned.3e-7"),
    "pretrained": (_path, ""),
    "finetune": (_bool, False),
    "average": (_int(1), 5),
    "results": (_path, os.path.join(REPO, "RESULTS.md")),
    "device_target": (_choice("CPU", "GPU", "Ascend"), "CPU"),
    "num_devices": (_int(1), 1),
    "num_nodes": (_int(1), 1),
    "node_rank": (_int(0), 0),
    "master_addr": (_text, "127.0.0.1"),
    "master_port": (_int(1, 65535), 0),
}


def parse_args(argv):
    """(recipe options as a dict, config overrides as ['--key=value', ...], {stage: the config
    that stage reads, as a plain dict})."""
    pairs, rest = split_arguments(argv)
    if rest:
        raise UsageError(f"unexpected argument '{rest[0]}': options look like --key=value")
    opts = {name: default for name, (_, default) in OPTIONS.items()}
    overrides = []
    for name, raw in pairs:
        if name in OPTIONS:
            opts[name] = OPTIONS[name][0](name, raw)
        elif name.rsplit(".", 1)[-1] in OWNED:
            raise UsageError(f"--{name}: the recipe sets this itself (its files are under "
                             "--data_dir and --exp_dir)")
        else:
            overrides.append(f"--{name}={raw}")
    if opts["stage"] > opts["stop_stage"]:
        raise UsageError(f"--stage {opts['stage']} is after --stop_stage {opts['stop_stage']}")
    if opts["node_rank"] >= opts["num_nodes"]:
        raise UsageError(f"--node_rank must be below --num_nodes ({opts['num_nodes']})")
    if opts["finetune"] and not opts["pretrained"]:
        raise UsageError("--finetune=true needs --pretrained=CHECKPOINT")
    if opts["pretrained"] and not os.path.isfile(opts["pretrained"]):
        raise UsageError(f"--pretrained: checkpoint not found: {opts['pretrained']}")
    if opts["mirror"] and "://" not in opts["mirror"]:
        opts["mirror"] = os.path.abspath(os.path.expanduser(opts["mirror"]))
    # every stage that reads the config gets the same overrides: check them all now, not after
    # a day of training (a key unknown or ambiguous for one of them, a value out of range)
    configs = {}
    for stage, entry in ENTRIES.items():
        try:
            cfg = load_config([f"--config_path={opts['config_path']}",
                               f"--device_target={opts['device_target']}", *overrides],
                              entry=entry, checks=False)
        except ConfigError as err:
            raise UsageError(str(err)) from None
        configs[stage] = {section: _outcome_keys(section, cfg[section])
                          for section in READS[stage]}
    return opts, overrides, configs


def _outcome_keys(section, value):
    """A config section's value without its SPEED_ONLY keys (a stage's settings record)."""
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in to_dict(value).items() if k not in SPEED_ONLY.get(section, ())}


def duration_text(seconds):
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if hours else f"{m} min {s} s" if m else f"{seconds:.1f} s"


def slug(heading):
    """GitHub's anchor of a markdown heading (as tests/test_docs.py checks them)."""
    text = heading.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def git_commit():
    try:
        proc = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


class Recipe:
    def __init__(self, opts, overrides, configs, argv):
        self.o, self.overrides, self.configs, self.argv = opts, overrides, configs, argv
        self.trains = not opts["pretrained"] or opts["finetune"]
        self.train_subsets = TRAIN_SUBSETS[opts["subset"]] if self.trains else []
        name = f"{opts['subset']}h"
        if opts["pretrained"]:
            stem = os.path.splitext(os.path.basename(opts["pretrained"]))[0]
            name = f"{stem}_finetune_{name}" if opts["finetune"] else stem
        self.exp = opts["exp_dir"] or os.path.join(REPO, "outputs", f"librispeech_{name}")
        self.data = opts["data_dir"]
        self.downloads = os.path.join(self.data, "download")
        self.lm_dir = os.path.join(self.data, "lm")
        self.done_dir = os.path.join(self.exp, ".done")
        self.manifests = {split: os.path.join(self.exp, "data", f"libri_{split}_manifest.csv")
                          for split in (["train"] if self.trains else []) + list(EVAL_SUBSETS)}
        self.ckpt_dir = os.path.join(self.exp, "checkpoints")
        self.final = os.path.join(self.exp, "final.ckpt")
        self.tune_dir = os.path.join(self.exp, "tune_lm")
        self.eval_dir = os.path.join(self.exp, "eval")
        self.record = os.path.join(self.exp, "results.md")
        lm_file = LMS[opts["lm"]]
        self.lm_path = os.path.join(self.lm_dir, lm_file[:-3] if opts["lm"] != "lm-norm"
                                    else "librispeech-lm-norm_3gram.arpa")
        self.files = [f"{s}.tar.gz" for s in self.train_subsets + list(EVAL_SUBSETS.values())]
        self.files.append(lm_file)

    # ------------------------------------------------------------------ bookkeeping
    def say(self, text):
        """A line on the console and in <exp_dir>/recipe.log (the record of what ran)."""
        print(f"{PROG}: {text}", flush=True)
        with open(os.path.join(self.exp, "recipe.log"), "a", encoding="utf-8") as f:
            f.write(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {text}\n")

    def marker(self, n):
        return os.path.join(self.done_dir, f"stage{n}")

    def key(self, n):
        """What stage n's outputs depend on, besides the outputs of the stages it reads."""
        o = self.o
        return [[self.downloads, self.files], [self.data, self.train_subsets], [self.lm_path],
                [self.configs[3], o["pretrained"], o["finetune"]], [o["average"], o["pretrained"]],
                self.configs[5], self.configs[6], [o["results"]]][n]

    def outputs(self, n):
        """The files stage n writes (all must exist for it to count as done)."""
        if n == 0:
            return [os.path.join(self.lm_dir if f in LMS.values() else self.downloads, f)
                    for f in self.files]
        if n == 3:
            return self.checkpoints()[-1:] or [os.path.join(self.ckpt_dir,
                                                            "DeepSpeech-<epoch>_<step>.ckpt")]
        return {1: list(self.manifests.values()), 2: [self.lm_path], 4: [self.final],
                5: [os.path.join(self.tune_dir, f) for f in ("best.json", "decode.yaml")],
                6: [os.path.join(self.eval_dir, "summary.json")], 7: [self.record]}[n]

    def is_done(self, n):
        try:
            with open(self.marker(n), encoding="utf-8") as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            return False
        if recorded.get("key") != self.key(n):
            self.say(f"stage {n} ({STAGES[n]}): its settings changed since it was done: "
                     "running it again")
            return False
        return all(os.path.exists(p) for p in self.outputs(n))

    def mark_done(self, n, seconds):
        atomic_write(self.marker(n), json.dumps({"stage": n, "name": STAGES[n], "key": self.key(n),
                                                 "seconds": round(seconds, 1)}) + "\n")

    def checkpoints(self):
        """This run's full checkpoints, oldest first (the folder is the recipe's own)."""
        found = []
        for path in glob.glob(os.path.join(self.ckpt_dir, "DeepSpeech-*_*.ckpt")):
            m = re.search(r"DeepSpeech-(\d+)_(\d+)\.ckpt$", path)
            if m:
                found.append(((int(m.group(1)), int(m.group(2))), path))
        return [path for _, path in sorted(found)]

    def need(self, path, n):
        if not os.path.exists(path):
            raise RecipeError(f"{path} not found: stage {n} ({STAGES[n]}) writes it; run it "
                              f"first (--stage {n})")

    def call(self, cmd, env=None):
        """Run one of the repository's tools; its output goes to the console as it comes."""
        self.say("run: " + shlex.join(cmd))
        status = subprocess.run(cmd, env={**os.environ, **(env or {})}).returncode
        if status != 0:
            raise RecipeError(f"the command above failed (exit status {status}); run the recipe "
                              "again to resume from this stage")

    def config_args(self, *extra_configs):
        return [f"--config_path={self.o['config_path']}",
                *[f"--config_path={c}" for c in extra_configs],
                f"--device_target={self.o['device_target']}", *self.overrides]

    # ------------------------------------------------------------------ the stages
    def stage_download(self):
        from data_prep.build_lm import OPENSLR_LM_URL
        from data_prep.download import download_file, mirror_url
        from data_prep.librispeech import MD5, OPENSLR_URL
        for name, path in zip(self.files, self.outputs(0)):
            subset = name[:-len(".tar.gz")] if name.endswith(".tar.gz") else None
            if self.o["mirror"]:
                url = mirror_url(self.o["mirror"], name)
            elif subset:
                url = OPENSLR_URL.format(subset=subset)
            else:
                url = OPENSLR_LM_URL.format(file=name)
            download_file(url, path, MD5.get(subset) if self.o["verify_md5"] else None)
            self.say(f"  {path}")

    def stage_data_prep(self):
        for f in self.files[:-1]:
            self.need(os.path.join(self.downloads, f), 0)
        self.call([sys.executable, os.path.join(REPO, "data_prep", "librispeech.py"),
                   "--source_dir", self.downloads, "--target_dir", self.data,
                   "--train_subsets", *self.train_subsets, "--val_subsets", EVAL_SUBSETS["val"],
                   "--test_clean_subsets", EVAL_SUBSETS["test_clean"],
                   "--test_other_subsets", EVAL_SUBSETS["test_other"]])
        # the experiment keeps its own copies: another --subset prepared later into the same
        # data_dir rewrites libri_train_manifest.csv there, not the data this run trained on
        os.makedirs(os.path.join(self.exp, "data"), exist_ok=True)
        for copy in self.manifests.values():
            tmp = f"{copy}.tmp{os.getpid()}"
            shutil.copyfile(os.path.join(self.data, os.path.basename(copy)), tmp)
            os.replace(tmp, copy)

    def stage_lm(self):
        source = os.path.join(self.lm_dir, LMS[self.o["lm"]])
        self.need(source, 0)
        if self.o["lm"] == "lm-norm":
            self.call([sys.executable, os.path.join(REPO, "data_prep", "build_lm.py"),
                       "--text", source, "--out", self.lm_path])
        else:
            from data_prep.build_lm import gunzip
            gunzip(source)

    def stage_train(self):
        o = self.o
        for split in ("train", "val"):
            self.need(self.manifests[split], 1)
        device = o["device_target"].lower()
        if o["num_devices"] > 1 or o["num_nodes"] > 1:
            cmd = ["bash", os.path.join(REPO, "scripts", f"run_distribute_train_{device}.sh"),
                   str(o["num_devices"]), "--master_addr", o["master_addr"]]
            if o["num_nodes"] > 1:
                cmd += ["--num_nodes", str(o["num_nodes"]), "--node_rank", str(o["node_rank"])]
            if o["master_port"]:
                cmd += ["--master_port", str(o["master_port"])]
        else:
            cmd = ["bash", os.path.join(REPO, "scripts", f"run_standalone_train_{device}.sh")]
        cmd += ["--config", o["config_path"], *self.overrides,
                f"--data.train_manifest={self.manifests['train']}",
                f"--data.val_manifest={self.manifests['val']}",
                f"--train.checkpoint_dir={self.ckpt_dir}",
                f"--train.log_dir={os.path.join(self.exp, 'train')}", "--train.resume=auto"]
        if o["pretrained"]:
            cmd.append(f"--train.pre_trained_model_path={o['pretrained']}")
        # the launch scripts run this same interpreter and keep their logs with the experiment
        self.call(cmd, env={"PYTHON": sys.executable, "LOG_DIR": os.path.join(self.exp, "logs")})

    def stage_average(self):
        if not self.trains:
            source = self.o["pretrained"]
            self.say(f"  the model is --pretrained {source}")
        else:
            found = self.checkpoints()
            if not found:
                self.need(os.path.join(self.ckpt_dir, "DeepSpeech-<epoch>_<step>.ckpt"), 3)
            last = min(self.o["average"], len(found))
            if last >= 2:
                if os.path.islink(self.final):  # an earlier run's link to one of them: the
                    os.remove(self.final)      # averaging would refuse to overwrite its input
                self.call([sys.executable, os.path.join(REPO, "average_checkpoints.py"),
                           "--checkpoint_dir", self.ckpt_dir, "--last", str(last),
                           "--out", self.final])
                return
            source = found[-1]
            self.say(f"  one checkpoint, nothing to average: the model is {source}")
        # a link, not a copy: the zoo's checkpoint is 991 MB
        tmp = f"{self.final}.tmp{os.getpid()}"
        os.symlink(source, tmp)
        os.replace(tmp, self.final)

    def stage_tune_lm(self):
        self.need(self.final, 4)
        self.need(self.lm_path, 2)
        self.call([sys.executable, os.path.join(REPO, "tune_lm.py"), *self.config_args(),
                   f"--tune_lm.checkpoint={self.final}", f"--decode.lm_path={self.lm_path}",
                   f"--tune_lm.manifest={self.manifests['val']}",
                   f"--tune_lm.output_dir={self.tune_dir}"])

    def stage_eval(self):
        self.need(self.final, 4)
        decode = os.path.join(self.tune_dir, "decode.yaml")
        self.need(decode, 5)
        tests = [self.manifests["test_clean"], self.manifests["test_other"]]
        self.call([sys.executable, os.path.join(REPO, "eval.py"), *self.config_args(decode),
                   f"--eval.checkpoint={self.final}", f"--eval.manifests={json.dumps(tests)}",
                   f"--eval.output_dir={self.eval_dir}"])

    def stage_results(self):
        summary = os.path.join(self.eval_dir, "summary.json")
        self.need(summary, 6)
        best_path = os.path.join(self.tune_dir, "best.json")
        self.need(best_path, 5)
        with open(summary, encoding="utf-8") as f:
            summary = json.load(f)
        with open(best_path, encoding="utf-8") as f:
            best = json.load(f)
        heading, row, body = self.results_entry(summary, best)
        add_to_results_log(self.o["results"], heading, row, body)
        atomic_write(self.record, f"## {heading}\n\n{body}\n\nindex row:\n{row}\n")
        self.say(f"  {self.o['results']}: new section '{heading}'")

    # ------------------------------------------------------------------ the RESULTS entry
    def results_entry(self, summary, best):
        """(heading, index row, section body) for RESULTS.md; the row's link is filled in by
        add_to_results_log, which knows the headings already there."""
        from src.env import cpu_name
        from src.manifest import read_manifest
        o = self.o
        hidden, layers, params = model_size(self.final)
        machine = cpu_name()
        device = o["device_target"]
        workers = o["num_devices"] * o["num_nodes"]
        if device != "CPU" or workers > 1:
            machine += f", {workers} × {device}"
        if self.trains:
            hours = sum(e.duration or 0.0 for e in read_manifest(self.manifests["train"])) / 3600
            epochs = max(int(re.search(r"DeepSpeech-(\d+)_", p).group(1))
                         for p in self.checkpoints())
            data = " + ".join(self.train_subsets)
            trained = f"{epochs} epochs on {data} ({hours:.2f} h)"
            if o["pretrained"]:
                trained = f"fine-tuned from {o['pretrained']}: " + trained
            what = f"{data}, {epochs} epochs"
        else:
            trained = f"not trained here: the checkpoint {o['pretrained']} as given"
            what = f"checkpoint {os.path.basename(o['pretrained'])}"
        if os.path.islink(self.final):
            model = f"{os.path.realpath(self.final)}"
        else:
            model = f"mean of the last {min(o['average'], len(self.checkpoints()))} checkpoints"
        results = {}
        for result in summary["results"].values():
            for split, path in self.manifests.items():
                if os.path.realpath(result["manifest"]) == os.path.realpath(path):
                    results[split] = result
        rows = []
        for split in ("test_clean", "test_other"):
            if split not in results:
                raise RecipeError(f"{self.eval_dir}/summary.json holds no result for "
                                  f"{self.manifests[split]}: run stage 6 again (--stage 6)")
            r = results[split]
            beam = next((v for k, v in r["decoders"].items() if k != "greedy"), None)
            if beam is None:
                raise RecipeError(f"{self.eval_dir}/summary.json has no beam+LM result: run "
                                  "stage 6 again (--stage 6)")
            greedy = r["decoders"]["greedy"]
            rows.append(f"| {EVAL_SUBSETS[split]} | {r['utterances']} | {greedy['wer']:.2f} % | "
                        f"{greedy['cer']:.2f} % | {beam['wer']:.2f} % | {beam['cer']:.2f} % |")
        commit = git_commit()
        date = datetime.date.today().isoformat()
        heading = f"{date}, {machine}: LibriSpeech recipe, {what}"
        command = shlex.join(["bash", "scripts/run_librispeech.sh", *self.argv])
        def wrap(text, indent=""):  # the file's own line length
            return textwrap.fill(text, 100, subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False)
        body = "\n".join([
            wrap(f"`{command}` (experiment folder {self.exp}); commit {commit}."),
            "",
            wrap(f"- Model: hidden {hidden} × {layers}, {params / 1e6:.1f} M parameters; "
                 f"{trained}; scored: {model}.", "  "),
            wrap(f"- Decoders: greedy, and beam {best.get('beam_width', '')} + LM "
                 f"`{os.path.basename(self.lm_path)}` with alpha {best['alpha']}, beta "
                 f"{best['beta']} tuned on dev-clean ({best['utterances']} utterances: WER "
                 f"{best['wer']:.2f} %, CER {best['cer']:.2f} %).", "  "),
            "",
            "| test set | utterances | greedy WER | greedy CER | beam + LM WER | beam + LM CER |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows])
        row = f"| {date} | {machine} | [LibriSpeech recipe: {what}, hidden {hidden} × {layers}]" \
              f"(#{{anchor}}) | {commit} |"
        return heading, row, body

    # ------------------------------------------------------------------ the run
    def run(self):
        o = self.o
        os.makedirs(self.done_dir, exist_ok=True)
        self.say(f"experiment {self.exp}; data {self.data}; stages {o['stage']} to "
                 f"{o['stop_stage']}")
        for n, name in enumerate(STAGES):
            if not o["stage"] <= n <= o["stop_stage"]:
                continue
            if n == 3 and not self.trains:
                self.say("stage 3 (train): not run: --pretrained without --finetune=true")
                continue
            if o["node_rank"] > 0 and n not in (0, 1, 3):
                self.say(f"stage {n} ({name}): not run on node rank {o['node_rank']} "
                         "(node 0 does it)")
                continue
            if self.is_done(n):
                self.say(f"stage {n} ({name}): done, skipped (remove {self.marker(n)} to run "
                         "it again)")
                continue
            for stale in affected(n):
                if os.path.exists(self.marker(stale)):
                    os.remove(self.marker(stale))
            self.say(f"stage {n} ({name}) ...")
            t0 = time.time()
            getattr(self, f"stage_{name}")()
            missing = [p for p in self.outputs(n) if not os.path.exists(p)]
            if missing:
                raise RecipeError(f"stage {n} ({name}) ended without writing {missing[0]}")
            self.mark_done(n, time.time() - t0)
            self.say(f"stage {n} ({name}): done in {duration_text(time.time() - t0)}")
        self.say("finished" + (f": {o['results']} has the new entry"
                               if o["stop_stage"] == 7 and o["node_rank"] == 0 else ""))


def affected(n):
    """Stage n and every stage that reads its outputs, directly or not."""
    found, todo = set(), [n]
    while todo:
        stage = todo.pop()
        if stage not in found:
            found.add(stage)
            todo.extend(READERS[stage])
    return sorted(found)


def model_size(path):
    """(hidden size, layers, parameter count) of a checkpoint (optimizer state left out)."""
    os.environ.setdefault("GLOG_v", "3")
    from src.checkpoints import network_params, read_checkpoint
    from src.deepspeech2 import infer_model_size
    params = network_params(read_checkpoint(path))
    hidden, layers = infer_model_size(params)[:2]
    return hidden, layers, sum(int(v.size) for v in params.values())


def add_to_results_log(path, heading, row, body):
    """Put the new section at the top of RESULTS.md's dated sections and its row at the top of
    the index (newest first, as the file's own instructions say), written atomically."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as err:
        raise RecipeError(f"--results: cannot read {path}: {err.strerror}") from None
    try:
        index = lines.index("## Index")
        separator = next(i for i in range(index, len(lines)) if lines[i].startswith("| ---"))
    except (ValueError, StopIteration):
        raise RecipeError(f"--results: {path} has no '## Index' table (is it RESULTS.md?)") \
            from None
    end = next((i for i in range(separator, len(lines)) if not lines[i].startswith("|")),
               len(lines))
    first = next((i for i in range(end, len(lines)) if lines[i].startswith("## ")), len(lines))
    taken = {slug(line[3:]) for line in lines if line.startswith("## ")}
    unique, n = heading, 1
    while slug(unique) in taken:  # the same run twice a day: the link must find its own section
        n += 1
        unique = f"{heading}, run {n}"
    section = [f"## {unique}", "", body, ""]
    lines = (lines[:separator + 1] + [row.replace("{anchor}", slug(unique))]
             + lines[separator + 1:first] + section + lines[first:])
    atomic_write(path, "\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        Recipe(*parse_args(argv), argv).run()
    except UsageError as err:
        print(f"{PROG}: error: {err} (see --help)", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # an unwritable --exp_dir, a full disk: the file and the reason
        print(f"{PROG}: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
