"""Launch scripts: argument checking, dry runs of the GPU/Ascend paths, any working directory."""
import os
import shlex
import subprocess

import pytest

from conftest import REPO


def script(name, *args, cwd=None, env=None):
    return subprocess.run(["bash", os.path.join(REPO, "scripts", name), *args], cwd=cwd or REPO,
                          capture_output=True, text=True, env=env, timeout=120)


def dry(name, *args, **kw):
    proc = script(name, *args, "--dry_run", **kw)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("dry run: (cd ")
    return shlex.split(line[len("dry run: ("):].rstrip(")"))


def test_every_script_prints_usage_on_help():
    for name in sorted(os.listdir(os.path.join(REPO, "scripts"))):
        if name.startswith("run_") and name != "run_tests.sh":
            proc = script(name, "--help")
            assert proc.returncode == 2 and "usage" in (proc.stdout + proc.stderr).lower(), name


@pytest.mark.parametrize("device", ["gpu", "ascend"])
def test_standalone_and_eval_dry_runs(device, tmp_path):
    ckpt = tmp_path / "my model.ckpt"  # a path with a space
    ckpt.write_bytes(b"x")
    words = dry(f"run_standalone_train_{device}.sh", str(ckpt), "--device_id", "3", "--epochs=2")
    target = {"gpu": "GPU", "ascend": "Ascend"}[device]
    assert words[:4] == ["cd", REPO, "&&", "python3"] and words[4:] == [
        "train.py", "--device_target", target, f"--pre_trained_model_path={ckpt}",
        "--device_id=3", "--epochs=2"]
    words = dry(f"run_eval_{device}.sh", str(ckpt), "--manifests=a.csv")
    assert words[4:] == ["eval.py", "--device_target", target, f"--checkpoint={ckpt}",
                         "--device_id=0", "--manifests=a.csv"]


def test_distributed_dry_runs(tmp_path):
    words = dry("run_distribute_train_gpu.sh", "4", "--first_device", "2", "--master_port",
                "29555", "--batch_size=16")
    assert words[3:5] == ["env", "CUDA_VISIBLE_DEVICES=2,3,4,5"]
    assert words[5:11] == ["msrun", "--worker_num=4", "--local_worker_num=4",
                           "--master_addr=127.0.0.1", "--master_port=29555",
                           f"--log_dir={REPO}/outputs/logs/run_distribute_train_gpu_workers"]
    assert words[12:] == ["train.py", "--device_target", "GPU", "--distribute=true",
                          "--batch_size=16"]
    words = dry("run_distribute_train_gpu.sh", "2", "--mpirun")
    assert words[5:8] == ["mpirun", "-n", "2"] and "--distribute=true" in words
    table = tmp_path / "rank table.json"
    table.write_text("{}")
    words = dry("run_distribute_train_ascend.sh", "8", "--rank_table", str(table))
    assert words[4] == "ASCEND_RT_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"
    assert f"--rank_table_file={table}" in words
    env = dict(os.environ, RANK_TABLE_FILE=str(table))
    assert f"--rank_table_file={table}" in dry("run_distribute_train_ascend.sh", "2", env=env)


def test_relative_paths_are_made_absolute_from_any_directory(tmp_path):
    (tmp_path / "c.ckpt").write_bytes(b"x")
    words = dry("run_eval_cpu.sh", "c.ckpt", cwd=tmp_path)
    assert f"--checkpoint={tmp_path}/c.ckpt" in words and words[1] == REPO


def test_bad_arguments():
    assert "needs a value" in script("run_eval_gpu.sh", "x.ckpt").stderr + \
        script("run_standalone_train_gpu.sh", "--device_id").stderr
    proc = script("run_distribute_train_cpu.sh", "0")
    assert proc.returncode == 2 and "NUM_DEVICES" in proc.stderr
    proc = script("run_standalone_train_ascend.sh", "stray")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr
    proc = script("run_distribute_train_cpu.sh", "2", "--mpirun")
    assert proc.returncode == 2 and "--mpirun is for GPU" in proc.stderr


def test_background_mode_prints_pid_and_log(tmp_path):
    env = dict(os.environ, LOG_DIR=str(tmp_path), PYTHON="true")  # a no-op "python"
    proc = script("run_standalone_train_gpu.sh", "--background", env=env)
    assert proc.returncode == 0
    assert "PID" in proc.stdout and f"log: {tmp_path}/run_standalone_train_gpu.log" in proc.stdout


def test_foreground_returns_the_python_exit_status(tmp_path):
    env = dict(os.environ, LOG_DIR=str(tmp_path), PYTHON="false")  # a failing "python"
    proc = script("run_standalone_train_gpu.sh", env=env)
    assert proc.returncode == 1
    assert f"log: {tmp_path}/run_standalone_train_gpu.log (exit status 1)" in proc.stdout
