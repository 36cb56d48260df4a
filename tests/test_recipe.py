"""The LibriSpeech recipe (scripts/run_librispeech.sh) end to end against a local file:// mirror of
tiny LibriSpeech-layout archives made from the bundled sample: every stage's outputs, a rerun
that skips every stage, kill -9 in training then a rerun that resumes, the RESULTS entry, the
--pretrained flow, and the command line's errors."""
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "run_librispeech.sh")
SAMPLE = os.path.join(REPO, "data_prep", "sample")
# published name <- (sample archive, first and last chapter taken): a few utterances each
MIRROR = {"train-clean-100": ("sample-train", 0, 2), "dev-clean": ("sample-dev", 0, 4),
          "test-clean": ("sample-test", 0, 4), "test-other": ("sample-test", 4, 8)}
TINY = ["--hidden_size=8", "--num_layers=1", "--epochs=3", "--batch_size=4", "--num_buckets=1",
        "--speed_perturb=false", "--warmup_steps=0", "--save_checkpoint_steps=0",
        "--num_parallel_workers=1", "--beam_width=8", "--alpha_steps=2", "--beta_steps=2"]


def make_mirror(folder):
    """LibriSpeech-layout archives under their published names, a 3-gram of their transcripts
    as 3-gram.pruned.3e-7.arpa.gz and those transcripts as librispeech-lm-norm.txt.gz."""
    from src.ngram import estimate, write_arpa
    os.makedirs(folder)
    sentences = []
    for name, (sample, first, last) in MIRROR.items():
        with tarfile.open(os.path.join(SAMPLE, f"{sample}.tar.gz")) as src:
            members = [m for m in src.getmembers() if m.isfile() and m.name.count("/") == 4]
            chapters = sorted({m.name.rsplit("/", 1)[0] for m in members})[first:last]
            with tarfile.open(os.path.join(folder, f"{name}.tar.gz"), "w:gz") as out:
                for m in members:
                    if m.name.rsplit("/", 1)[0] in chapters:
                        data = src.extractfile(m).read()
                        if m.name.endswith(".trans.txt"):
                            sentences += [line.split(" ", 1)[1].split()
                                          for line in data.decode().splitlines()]
                        m.name = m.name.replace(f"/{sample}/", f"/{name}/")
                        out.addfile(m, io.BytesIO(data))
    arpa = os.path.join(folder, "tiny.arpa")
    write_arpa(estimate(sentences, 3), arpa)
    with open(arpa, "rb") as f, gzip.open(os.path.join(folder, "3-gram.pruned.3e-7.arpa.gz"),
                                          "wb") as g:
        shutil.copyfileobj(f, g)
    with gzip.open(os.path.join(folder, "librispeech-lm-norm.txt.gz"), "wt") as g:
        g.write("".join(" ".join(s) + "\n" for s in sentences))


def recipe_command(tmp, *extra):
    return ["bash", SCRIPT, f"--mirror=file://{tmp}/mirror", f"--data_dir={tmp}/data",
            f"--exp_dir={tmp}/exp", f"--results={tmp}/RESULTS.md", "--verify_md5=false", *TINY,
            *extra]


def env():
    return {**os.environ, "PYTHON": sys.executable}


def run(cmd, cwd, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env(),
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    make_mirror(str(tmp / "mirror"))
    shutil.copyfile(os.path.join(REPO, "RESULTS.md"), tmp / "RESULTS.md")
    return tmp


def test_the_recipe_runs_every_stage_resumes_a_killed_training_and_skips_what_is_done(workspace):
    tmp, exp = workspace, workspace / "exp"
    t0 = time.time()
    # run 1, from another folder than the repository: killed (-9, the whole job) in training
    log = tmp / "run1.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(recipe_command(tmp), cwd=tmp, stdout=out,
                                stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    deadline = time.time() + 240
    while not list((exp / "checkpoints").glob("DeepSpeech-1_*.ckpt")):
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-4000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = log.read_text()
    assert not (exp / ".done" / "stage3").exists(), "killed too late to test anything:\n" + first
    for n in range(3):
        assert (exp / ".done" / f"stage{n}").exists(), first
    for name in MIRROR:
        assert (tmp / "data" / "download" / f"{name}.tar.gz").is_file()
    assert (tmp / "data" / "lm" / "3-gram.pruned.3e-7.arpa").is_file()
    for split in ("train", "val", "test_clean", "test_other"):
        assert (exp / "data" / f"libri_{split}_manifest.csv").is_file()

    # run 2: stages 0-2 skipped, training resumes from its checkpoint, 4-7 run
    second = run(recipe_command(tmp), cwd=tmp)
    for n, name in enumerate(("download", "data_prep", "lm")):
        assert f"stage {n} ({name}): done, skipped" in second
    train_log = (exp / "train" / "train.log").read_text()
    assert re.search(r"resumed from .*DeepSpeech-1_\d+\.ckpt", train_log), train_log[-2000:]
    assert (exp / "logs" / "run_standalone_train_cpu.log").is_file()
    checkpoints = sorted(p.name for p in (exp / "checkpoints").glob("DeepSpeech-[0-9]*.ckpt"))
    assert [c.split("_")[0] for c in checkpoints] == ["DeepSpeech-1", "DeepSpeech-2",
                                                      "DeepSpeech-3"], checkpoints
    assert "averaged:" in second and (exp / "final.ckpt").is_file()
    best = json.loads((exp / "tune_lm" / "best.json").read_text())
    assert (exp / "tune_lm" / "decode.yaml").is_file()
    summary = json.loads((exp / "eval" / "summary.json").read_text())
    assert summary["decoder"]["method"] == "beam" and summary["decoder"]["alpha"] == best["alpha"]
    for n in range(8):
        assert (exp / ".done" / f"stage{n}").exists()

    # the RESULTS copy: one new index row and one new section, holding eval's figures
    results = (tmp / "RESULTS.md").read_text()
    original = open(os.path.join(REPO, "RESULTS.md"), encoding="utf-8").read()
    assert results.count("LibriSpeech recipe") == original.count("LibriSpeech recipe") + 2
    index = results.split("## Index", 1)[1]
    row = index.split("\n| --- |", 1)[1].split("\n")[1]
    anchor = re.search(r"\(#([^)]+)\)", row).group(1)
    assert "train-clean-100, 3 epochs, hidden 8 × 1" in row
    from test_docs import anchors
    assert anchor in anchors(results)
    section = results.split("\n## ")[2]  # the first section after the index
    assert anchor == re.sub(r"[^\w\- ]", "", section.split("\n")[0].lower()).replace(" ", "-")
    for name, split in (("libri_test_clean_manifest", "test-clean"),
                        ("libri_test_other_manifest", "test-other")):
        r = summary["results"][name]["decoders"]
        beam = r["beam+lm"]
        line = next(x for x in section.split("\n") if x.startswith(f"| {split} |"))
        assert (f"| {r['greedy']['wer']:.2f} % | {r['greedy']['cer']:.2f} % | "
                f"{beam['wer']:.2f} % | {beam['cer']:.2f} % |") in line
    hours = sum(float(x.rsplit(",", 1)[1]) for x in
                (exp / "data" / "libri_train_manifest.csv").read_text().splitlines()) / 3600
    assert f"({hours:.2f} h)" in section and "M parameters" in section
    assert (exp / "results.md").is_file()

    # run 3: everything is done; the RESULTS file is left alone
    third = run(recipe_command(tmp), cwd=tmp, timeout=120)
    for n, name in enumerate(("download", "data_prep", "lm", "train", "average", "tune_lm",
                              "eval", "results")):
        assert f"stage {n} ({name}): done, skipped" in third, third
    assert (tmp / "RESULTS.md").read_text() == results
    print(f"recipe: kill, resume and rerun in {time.time() - t0:.0f} s")


def test_a_changed_setting_reruns_its_stage_and_the_ones_after_it(workspace):
    exp = workspace / "exp"
    if not (exp / ".done" / "stage7").exists():
        pytest.skip("needs the finished recipe of the test above")
    out = run(recipe_command(workspace, "--stop_stage", "2", "--lm=lm-norm"), cwd=workspace)
    assert "stage 0 (download): its settings changed" in out  # one more file to fetch
    assert "stage 1 (data_prep): done, skipped" in out
    assert "stage 2 (lm): its settings changed" in out
    assert (workspace / "data" / "lm" / "librispeech-lm-norm_3gram.arpa").is_file()
    for n in (5, 6, 7):
        assert not (exp / ".done" / f"stage{n}").exists(), "what reads the LM must run again"
    for n in (1, 3, 4):
        assert (exp / ".done" / f"stage{n}").exists(), "what does not read it stays done"
    # a decoder setting is not the training's: it stays done
    out = run(recipe_command(workspace, "--stage", "3", "--stop_stage", "4", "--beam_width=16"),
              cwd=workspace)
    assert "stage 3 (train): done, skipped" in out and "stage 4 (average): done, skipped" in out
    # how fast or how verbosely it runs changes no output: nothing runs again
    out = run(recipe_command(workspace, "--stage", "3", "--stop_stage", "4", "--read_threads=3",
                             "--log_interval=5", "--tensorboard=false"), cwd=workspace)
    assert "stage 3 (train): done, skipped" in out and "stage 4 (average): done, skipped" in out


def test_pretrained_checkpoint_is_scored_without_training(workspace):
    exp = workspace / "exp"
    checkpoints = sorted((exp / "checkpoints").glob("DeepSpeech-3_*.ckpt"))
    if not checkpoints:
        pytest.skip("needs the trained checkpoint of the first test")
    zoo = workspace / "DeepSpeech.ckpt"  # a full checkpoint, Adam moments included, as the zoo's
    shutil.copyfile(checkpoints[0], zoo)
    out = run(["bash", SCRIPT, f"--mirror={workspace}/mirror", f"--data_dir={workspace}/data",
               f"--exp_dir={workspace}/zoo", f"--results={workspace}/RESULTS.md",
               "--verify_md5=false", f"--pretrained={zoo}", "--beam_width=8", "--alpha_steps=1",
               "--beta_steps=1", "--num_parallel_workers=1"], cwd=workspace)
    assert "stage 3 (train): not run: --pretrained without --finetune=true" in out
    assert os.path.realpath(workspace / "zoo" / "final.ckpt") == str(zoo)
    assert not (workspace / "zoo" / "data" / "libri_train_manifest.csv").exists()
    section = (workspace / "RESULTS.md").read_text().split("\n## ")[2]
    assert "checkpoint DeepSpeech.ckpt" in section and "not trained here" in section


def test_help_exits_0_and_a_bad_option_is_one_line_with_status_2(tmp_path):
    proc = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, env=env(),
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "" and "usage" in proc.stdout.lower()
    for n, name in enumerate(("download", "data_prep", "lm", "train", "average", "tune_lm",
                              "eval", "results")):
        assert re.search(rf"^  {n} {name} ", proc.stdout, re.M), name
    for args, words in [(["--stage", "9"], "--stage must be a whole number from 0 to 7"),
                        (["--subset=200"], "--subset must be one of 100, 460, 960"),
                        (["--no_such_key=1"], "unknown config key 'no_such_key'"),
                        (["--checkpoint_dir=x"], "the recipe sets this itself"),
                        (["--finetune=true"], "needs --pretrained"),
                        (["--stage", "5", "--stop_stage", "2"], "is after --stop_stage"),
                        (["stray"], "unexpected argument 'stray'")]:
        proc = subprocess.run(["bash", SCRIPT, *args, f"--exp_dir={tmp_path}/exp"],
                              capture_output=True, text=True, env=env(), cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "exp").exists(), "nothing may be written on a usage error"


@pytest.mark.parametrize("flags, script, expected", [
    (["--device_target=GPU", "--num_devices", "8", "--num_nodes", "2", "--node_rank", "1",
      "--master_addr", "10.0.0.1", "--master_port", "29500"], "run_distribute_train_gpu.sh",
     ["--worker_num=16", "--local_worker_num=8", "--master_addr=10.0.0.1",
      "--master_port=29500", "--node_rank=1", "--device_target", "GPU", "--distribute=true"]),
    (["--device_target=Ascend"], "run_standalone_train_ascend.sh",
     ["--device_target", "Ascend", "--device_id=0"]),
])
def test_device_and_distributed_flags_reach_the_launcher(tmp_path, monkeypatch, flags, script,
                                                         expected):
    """Stage 3's command, run with the launcher's --dry_run: the flags arrive where the train
    scripts take them, and the config overrides after the recipe's config."""
    import shlex

    from data_prep import recipe
    argv = [f"--exp_dir={tmp_path}/exp", *flags, "--hidden_size=32", "--epochs=2"]
    r = recipe.Recipe(*recipe.parse_args(argv), argv)
    for path in r.manifests.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    calls = []
    monkeypatch.setattr(recipe.Recipe, "call", lambda self, cmd, env=None: calls.append((cmd, env)))
    r.stage_train()
    (cmd, extra), = calls
    assert os.path.basename(cmd[1]) == script
    proc = subprocess.run([*cmd, "--dry_run"], capture_output=True, text=True,
                          env={**os.environ, **extra}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout.strip().splitlines()[-1][len("dry run: "):])
    for word in expected:
        assert word in words, (word, words)
    tail = words[words.index("--hidden_size=32"):]
    assert tail[:2] == ["--hidden_size=32", "--epochs=2"]
    assert f"--config_path={recipe.OPTIONS['config_path'][1]}" in words
    assert f"--train.checkpoint_dir={tmp_path}/exp/checkpoints" in tail
    assert "--train.resume=auto" in tail


def test_other_nodes_prepare_data_and_train_only(tmp_path, monkeypatch):
    from data_prep import recipe
    argv = [f"--exp_dir={tmp_path}/exp", "--num_devices", "2", "--num_nodes", "2",
            "--node_rank", "1", "--stage", "2", "--stop_stage", "7"]
    r = recipe.Recipe(*recipe.parse_args(argv), argv)
    ran = []
    monkeypatch.setattr(recipe.Recipe, "stage_train", lambda self: ran.append(3))
    monkeypatch.setattr(recipe.Recipe, "outputs", lambda self, n: [])
    monkeypatch.setattr("builtins.print", lambda *a, **k: None)
    r.run()
    assert ran == [3]
    log = (tmp_path / "exp" / "recipe.log").read_text()
    for n, name in ((2, "lm"), (4, "average"), (7, "results")):
        assert f"stage {n} ({name}): not run on node rank 1" in log


def test_a_mirror_is_a_folder_or_a_url_of_one(tmp_path):
    from data_prep.download import download_file, mirror_url
    folder = tmp_path / "my mirror"
    folder.mkdir()
    (folder / "dev-clean.tar.gz").write_bytes(b"archive")
    assert mirror_url("https://example.org/slr12/", "dev-clean.tar.gz") == \
        "https://example.org/slr12/dev-clean.tar.gz"
    for mirror in (str(folder), folder.as_uri()):
        out = tmp_path / "got" / mirror[-3:] / "dev-clean.tar.gz"
        download_file(mirror_url(mirror, "dev-clean.tar.gz"), str(out))
        assert out.read_bytes() == b"archive"
