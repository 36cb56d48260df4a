"""Wrong input at every entry point: one clear line on stderr, a non-zero exit, no traceback;
or, where the rest of the work can go on, a counted skip that names the file."""
import io
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, prep_command, run

PY = sys.executable


def _gpu_present():
    import mindspore as ms
    return ms.device_context.gpu.is_available()


@pytest.fixture(scope="module")
def files(ms_context, sample_data, tmp_path_factory):
    """A tiny checkpoint (hidden 16 x 1), garbage, a small good manifest and broken ones."""
    from src.config import load_config
    from src.deepspeech2 import build_network
    root = tmp_path_factory.mktemp("errors")
    net = build_network(load_config(["--hidden_size=16", "--num_layers=1"]))
    ms_context.save_checkpoint(net, str(root / "tiny.ckpt"))
    (root / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    (root / "afile").write_text("a file where a folder is expected")
    (root / "t.txt").write_text("HELLO")
    (root / "missing_audio.csv").write_text(f"{root}/t.txt,{root}/t.txt\n{root}/nope.wav,{root}/t.txt\n")
    (root / "bad.yaml").write_text("model: [unclosed\n")
    lines = (sample_data / "libri_train_manifest.csv").read_text().splitlines(keepends=True)
    (root / "train.csv").write_text("".join(lines[:4]))
    buf = io.BytesIO()
    sf.write(buf, (np.random.default_rng(0).standard_normal(32000) * 3000).astype(np.int16), 16000,
             format="FLAC")
    data = bytearray(buf.getvalue())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)  # valid header, broken frames
    (root / "corrupt.flac").write_bytes(bytes(data))
    (root / "corrupt.csv").write_text("".join(lines[:3]) + f"{root}/corrupt.flac,{root}/t.txt\n")
    (root / "only_corrupt.csv").write_text(f"{root}/corrupt.flac,{root}/t.txt\n")
    (root / "s.raw").write_bytes(np.zeros(8000, np.int16).tobytes())
    (root / "raw.csv").write_text(f"{root}/s.raw,{root}/t.txt\n")
    (root / "latin1.txt").write_bytes("CAF\xc9".encode("latin-1"))
    wav = lines[0].split(",")[0]
    (root / "latin1.csv").write_text(f"{wav},{root}/latin1.txt\n")
    (root / "samples5.json").write_text(json.dumps({"root_path": str(root), "samples": 5}))
    (root / "list.json").write_text("[]")
    (root / "lm.arpa.gz").write_bytes(b"\x1f\x8b")
    (root / "broken.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\nnot numbers\n")
    return root


CASES = [
    ("unknown key", [PY, "train.py", "--no_such_key=1"], "unknown config key 'no_such_key'"),
    ("wrong type", [PY, "train.py", "--epochs=ten"], "'train.epochs' expects a int"),
    ("bad yaml", [PY, "eval.py", "--config_path={d}/bad.yaml"], "is not valid YAML"),
    ("device", [PY, "train.py", "--device_target=TPU"], "'device_target' must be one of CPU"),
    ("negative lr", [PY, "train.py", "--learning_rate=-1"], "'train.learning_rate' must be > 0"),
    ("negative batch", [PY, "train.py", "--batch_size=-2"], "'data.batch_size' must be >= 1"),
    ("zero batch", [PY, "eval.py", "--batch_size=0"], "'data.batch_size' must be >= 1; got 0"),
    ("zero epochs", [PY, "train.py", "--epochs=0"], "'train.epochs' must be >= 1; got 0"),
    ("zero buckets", [PY, "train.py", "--num_buckets=0"], "'data.num_buckets' must be >= 1"),
    ("amp on cpu", [PY, "train.py", "--amp_level=O2"], "train.amp_level=O2 needs GPU or Ascend"),
    ("amp level", [PY, "train.py", "--amp_level=O7"], "'train.amp_level' must be one of"),
    ("jit O2 on cpu", [PY, "train.py", "--jit_level=O2"], "runs on Ascend only, not CPU"),
    ("missing ckpt", [PY, "eval.py", "--pretrain_ckpt={d}/none.ckpt"], "checkpoint not found"),
    ("garbage ckpt", [PY, "export.py", "--checkpoint={d}/garbage.ckpt"], "cannot read checkpoint"),
    ("other architecture", [PY, "train.py", "--pre_trained_model_path={d}/tiny.ckpt",
                            "--train_manifest={d}/train.csv"], "shape mismatch"),
    ("weights-only resume", [PY, "train.py", "--resume={d}/tiny.ckpt", "--hidden_size=16",
                             "--num_layers=1", "--train_manifest={d}/train.csv"],
     "has no training position"),
    ("missing manifest", [PY, "train.py", "--train_manifest={d}/none.csv"], "manifest not found"),
    ("comma list hint", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests={d}/x,y/t.csv"],
     "a path holding a comma goes in a YAML list"),
    ("manifest line", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt",
                       "--manifests={d}/missing_audio.csv"],
     "missing_audio.csv:2: audio file not found"),
    ("manifest twice", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt",
                        "--manifests={d}/train.csv,{d}/train.csv"], "manifest given more than once"),
    ("nothing decodable", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt",
                           "--manifests={d}/raw.csv"],
     "{d}/raw.csv: no usable utterances (skipped: 1 unreadable audio; first: {d}/raw.csv:1: "
     "cannot read audio {d}/s.raw: no audio header"),
    ("only corrupt audio in training", [PY, "train.py", "--train_manifest={d}/only_corrupt.csv",
                                        "--hidden_size=16", "--num_layers=1", "--val_manifest=",
                                        "--checkpoint_dir={d}/ck_corrupt",
                                        "--log_dir={d}/log_corrupt"],
     "cannot read audio {d}/corrupt.flac"),
    ("not utf-8", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests={d}/latin1.csv"],
     "transcript {d}/latin1.txt is not UTF-8 text"),
    ("json samples", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests={d}/samples5.json"],
     "'samples' must be a list"),
    ("json list", [PY, "train.py", "--train_manifest={d}/list.json"],
     "a JSON manifest must be an object"),
    ("no manifests", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests="],
     "no manifest to evaluate"),
    ("unwritable checkpoint_dir", [PY, "train.py", "--checkpoint_dir={d}/afile/ck"],
     "train.checkpoint_dir: cannot write to {d}/afile/ck"),
    ("unwritable log_dir", [PY, "train.py", "--log_dir={d}/afile/log"],
     "train.log_dir: cannot write to {d}/afile/log"),
    ("unwritable eval output", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt",
                                "--output_dir={d}/afile/out"], "eval.output_dir: cannot write to"),
    ("unwritable export folder", [PY, "export.py", "--checkpoint={d}/tiny.ckpt",
                                  "--file_name={d}/afile/net"], "export.file_name's folder: cannot"),
    ("air on cpu", [PY, "export.py", "--file_format=AIR", "--checkpoint={d}/tiny.ckpt"],
     "AIR export needs"),
    ("missing lm", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--decode.method=beam",
                    "--decode.lm_path={d}/none.arpa"], "language model not found: {d}/none.arpa"),
    ("lm without beam", [PY, "transcribe.py", "--checkpoint={d}/tiny.ckpt", "x.wav",
                         "--decode.lm_path={d}/lm.arpa.gz"], "add --decode.method=beam"),
    ("gzipped lm", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--decode.method=beam",
                    "--decode.lm_path={d}/lm.arpa.gz"], "gunzip -k {d}/lm.arpa.gz"),
    ("broken lm", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--decode.method=beam",
                   "--decode.lm_path={d}/broken.arpa", "--manifests={d}/train.csv"],
     "cannot load language model {d}/broken.arpa"),
    ("decode method", [PY, "eval.py", "--decode.method=viterbi"],
     "'decode.method' must be one of greedy, beam"),
    ("beam width", [PY, "transcribe.py", "--decode.beam_width=0"],
     "'decode.beam_width' must be >= 1"),
    ("tune without lm", [PY, "tune_lm.py", "--checkpoint={d}/tiny.ckpt"],
     "no language model to tune"),
    ("build_lm order", [PY, "data_prep/build_lm.py", "--order=1", "--text={d}/t.txt"],
     "--order must be at least 2"),
    ("data_prep source", prep_command("{d}/none", "{d}/out"), "source_dir not found"),
    ("data_prep target", prep_command(f"{REPO}/data_prep/sample", "{d}/afile/out"),
     "--target_dir: cannot write to {d}/afile/out"),
    ("data_prep args", [PY, "data_prep/librispeech.py"], "required: --source_dir"),
    ("script usage", ["bash", "scripts/run_eval_cpu.sh"], "usage: bash scripts/run_eval_cpu.sh"),
    ("script ckpt", ["bash", "scripts/run_export.sh", "{d}/none.ckpt"], "checkpoint not found"),
    ("script transcribe usage", ["bash", "scripts/run_transcribe.sh", "{d}/tiny.ckpt"],
     "bash scripts/run_transcribe.sh STREAMING.ckpt --normalize=global (--stream"),
    ("script transcribe model", ["bash", "scripts/run_transcribe.sh", "{d}/none.mindir", "a.wav"],
     "model not found or unreadable"),
    ("script devices", ["bash", "scripts/run_distribute_train_cpu.sh", "two"],
     "NUM_DEVICES must be a positive integer"),
    ("script option", ["bash", "scripts/run_standalone_train_gpu.sh", "--device_id"],
     "--device_id needs a value"),
    ("script node rank", ["bash", "scripts/run_distribute_train_cpu.sh", "1", "--num_nodes", "2",
                          "--node_rank", "2", "--master_port", "1234"],
     "--node_rank must be a number from 0 to num_nodes - 1 (1)"),
]
NO_GPU_CASES = [
    ("no gpu", [PY, "eval.py", "--device_target=GPU", "--checkpoint={d}/tiny.ckpt"],
     "device_target GPU is not available"),
    ("no gpu, distributed", ["bash", "scripts/run_distribute_train_gpu.sh", "2"],
     "device_target GPU is not available"),
]


def check_one_line(proc, message, name):
    assert proc.returncode != 0, name
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert message in "\n".join(lines[-2:]), (name, proc.stderr[-1500:])  # usage + its example
    assert "Traceback" not in proc.stderr, name


@pytest.mark.parametrize("name,cmd,message", CASES, ids=[c[0] for c in CASES])
def test_wrong_input_gets_one_clear_line(files, name, cmd, message):
    cmd = [part.format(d=files) for part in cmd]
    if cmd[1] == "train.py":  # never the repository's outputs/, whatever a user left there
        for key in ("checkpoint_dir", "log_dir"):
            if not any(part.startswith(f"--{key}=") for part in cmd):
                cmd.append(f"--{key}={files}/{key}_{name.replace(' ', '_')}")
    proc = run(cmd, ok=False, timeout=300)
    check_one_line(proc, message.format(d=files), name)


@pytest.mark.parametrize("name,cmd,message", NO_GPU_CASES, ids=[c[0] for c in NO_GPU_CASES])
def test_missing_gpu_gets_one_clear_line(files, name, cmd, message):
    if _gpu_present():
        pytest.skip("this machine has a GPU")
    proc = run([part.format(d=files) for part in cmd], ok=False, timeout=300)
    check_one_line(proc, message, name)


def test_output_locations_are_checked_before_any_work(files):
    proc = run([PY, "train.py", f"--checkpoint_dir={files}/afile/ck"], ok=False)
    assert "train manifest" not in proc.stderr and "epoch" not in proc.stderr


def test_undecodable_audio_is_named_in_the_log_and_training_goes_on_without_it(files):
    """Found where it is first read: its batch trains on the others, the file is named and
    counted; a run with nothing readable stops, naming it."""
    common = ["--hidden_size=16", "--num_layers=1", "--val_manifest=", "--epochs=2"]
    run([PY, "train.py", f"--train_manifest={files}/corrupt.csv", *common,
         f"--checkpoint_dir={files}/ck_log", f"--log_dir={files}/log_goes_on"])
    log = (files / "log_goes_on" / "train.log").read_text()
    assert log.count(f"skipped where first read: cannot read audio {files}/corrupt.flac") == 1
    assert "epoch 2 done: step 2" in log and "skipped where first read: 1 unreadable audio" in log
    run([PY, "train.py", f"--train_manifest={files}/only_corrupt.csv", *common,
         f"--checkpoint_dir={files}/ck_stop", f"--log_dir={files}/log_stop"], ok=False)
    log = (files / "log_stop" / "train.log").read_text()
    assert f"ERROR stopped: step 1: no utterance of the last 1 step(s) could be read (first: " \
           f"cannot read audio {files}/corrupt.flac" in log
    assert "resume with --resume=auto" in log


def test_eval_skips_names_and_counts_undecodable_audio_and_empty_references(files, sample_data):
    lines = (sample_data / "libri_train_manifest.csv").read_text().splitlines(keepends=True)
    (files / "empty.txt").write_text("  \n")
    manifest = files / "mixed.csv"
    manifest.write_text("".join(lines[:3]) + f"{files}/corrupt.flac,{files}/t.txt\n"
                        + lines[3].split(",")[0] + f",{files}/empty.txt\n"
                        + f"{files}/s.raw,{files}/t.txt\n")
    out = files / "eval_mixed"
    proc = run([PY, "eval.py", f"--checkpoint={files}/tiny.ckpt", f"--manifests={manifest}",
                f"--output_dir={out}"])
    assert "Traceback" not in proc.stderr
    entry = json.loads((out / "summary.json").read_text())["results"]["mixed"]
    assert entry["utterances"] == 3
    assert entry["skipped"] == {"unreadable audio": 2, "empty transcript": 1}
    named = "\n".join(entry["skipped_files"])
    assert f"{files}/corrupt.flac" in named and f"{files}/s.raw" in named
    assert f"{files}/empty.txt: empty transcript" in named
    assert "skipped: 1 empty transcript, 2 unreadable audio" in proc.stdout
