"""Wrong input at every entry point: one clear line on stderr, a non-zero exit, no traceback."""
import sys

import pytest

from conftest import run

PY = sys.executable


@pytest.fixture(scope="module")
def files(ms_context, sample_data, tmp_path_factory):
    """A tiny checkpoint (hidden 16 x 1), garbage, a small good manifest and broken ones."""
    from src.builders import build_network
    from src.config import load_config
    root = tmp_path_factory.mktemp("errors")
    net = build_network(load_config(["--hidden_size=16", "--num_layers=1"]))
    ms_context.save_checkpoint(net, str(root / "tiny.ckpt"))
    (root / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    (root / "wav.wav").write_bytes(b"")
    (root / "t.txt").write_text("HELLO")
    (root / "missing_audio.csv").write_text(f"{root}/t.txt,{root}/t.txt\n{root}/nope.wav,{root}/t.txt\n")
    (root / "bad.yaml").write_text("model: [unclosed\n")
    lines = (sample_data / "libri_train_manifest.csv").read_text().splitlines(keepends=True)
    (root / "train.csv").write_text("".join(lines[:4]))
    import io
    import numpy as np
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, (np.random.default_rng(0).standard_normal(32000) * 3000).astype(np.int16), 16000,
             format="FLAC")
    data = bytearray(buf.getvalue())
    data[len(data) // 2:len(data) // 2 + 4000] = b"\xff" * 4000  # valid header, broken frames
    (root / "corrupt.flac").write_bytes(bytes(data))
    (root / "corrupt.csv").write_text("".join(lines[:3]) + f"{root}/corrupt.flac,{root}/t.txt\n")
    return root


CASES = [
    ("unknown key", [PY, "train.py", "--no_such_key=1"], "unknown config key 'no_such_key'"),
    ("wrong type", [PY, "train.py", "--epochs=ten"], "'train.epochs' expects a int"),
    ("bad yaml", [PY, "eval.py", "--config_path={d}/bad.yaml"], "is not valid YAML"),
    ("device", [PY, "train.py", "--device_target=TPU"], "device_target must be one of"),
    ("no gpu", [PY, "eval.py", "--device_target=GPU", "--checkpoint={d}/tiny.ckpt"],
     "device_target GPU is not available"),
    ("amp on cpu", [PY, "train.py", "--amp_level=O2"], "train.amp_level=O2 needs GPU or Ascend"),
    ("amp level", [PY, "train.py", "--amp_level=O7"], "train.amp_level must be one of"),
    ("jit O2 on cpu", [PY, "train.py", "--jit_level=O2"], "runs on Ascend only, not CPU"),
    ("missing ckpt", [PY, "eval.py", "--pretrain_ckpt={d}/none.ckpt"], "checkpoint not found"),
    ("garbage ckpt", [PY, "export.py", "--checkpoint={d}/garbage.ckpt"], "cannot read checkpoint"),
    ("other architecture", [PY, "train.py", "--pre_trained_model_path={d}/tiny.ckpt",
                            "--train_manifest={d}/train.csv"], "shape mismatch"),
    ("weights-only resume", [PY, "train.py", "--resume={d}/tiny.ckpt", "--hidden_size=16",
                             "--num_layers=1", "--train_manifest={d}/train.csv"],
     "has no training position"),
    ("missing manifest", [PY, "train.py", "--train_manifest={d}/none.csv"], "manifest not found"),
    ("manifest line", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt",
                       "--manifests={d}/missing_audio.csv"],
     "missing_audio.csv:2: audio file not found"),
    ("corrupt audio", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests={d}/corrupt.csv"],
     "cannot read audio {d}/corrupt.flac"),
    ("no manifests", [PY, "eval.py", "--checkpoint={d}/tiny.ckpt", "--manifests="],
     "no manifest to evaluate"),
    ("air on cpu", [PY, "export.py", "--file_format=AIR", "--checkpoint={d}/tiny.ckpt"],
     "AIR export needs"),
    ("data_prep source", [PY, "data_prep/librispeech.py", "--source_dir={d}/none",
                          "--target_dir={d}/out"], "source_dir not found"),
    ("data_prep args", [PY, "data_prep/librispeech.py"], "required: --source_dir"),
    ("script usage", ["bash", "scripts/run_eval_cpu.sh"], "usage: bash scripts/run_eval_cpu.sh"),
    ("script ckpt", ["bash", "scripts/run_export.sh", "{d}/none.ckpt"], "checkpoint not found"),
    ("script devices", ["bash", "scripts/run_distribute_train_cpu.sh", "two"],
     "NUM_DEVICES must be a positive integer"),
    ("script option", ["bash", "scripts/run_standalone_train_gpu.sh", "--device_id"],
     "--device_id needs a value"),
]


@pytest.mark.parametrize("name,cmd,message", CASES, ids=[c[0] for c in CASES])
def test_wrong_input_gets_one_clear_line(files, name, cmd, message):
    proc = run([part.format(d=files) for part in cmd], ok=False, timeout=300)
    message = message.format(d=files)
    assert proc.returncode != 0, name
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert message in "\n".join(lines[-2:]), (name, proc.stderr[-1500:])  # usage + its example
    assert "Traceback" not in proc.stderr
