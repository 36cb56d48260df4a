"""Launch scripts: argument checking, dry runs of the GPU/Ascend paths, any working directory."""
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from conftest import REPO


def script(name, *args, cwd=None, env=None):
    return subprocess.run(["bash", os.path.join(REPO, "scripts", name), *args], cwd=cwd or REPO,
                          capture_output=True, text=True, env=env, timeout=120)


def launcher_python(env=None, repo=REPO):
    """The interpreter the scripts choose (scripts/common.sh) in this environment."""
    proc = subprocess.run(["bash", "-c", f"source {repo}/scripts/common.sh; echo \"$PYTHON\""],
                          capture_output=True, text=True, env=env, check=True)
    return proc.stdout.strip()


PY = launcher_python()


def dry(name, *args, **kw):
    proc = script(name, *args, "--dry_run", **kw)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("dry run: ")
    return shlex.split(line[len("dry run: "):])


def test_every_script_prints_usage_on_help_and_exits_0():
    for name in sorted(os.listdir(os.path.join(REPO, "scripts"))):
        if name.endswith(".sh") and name != "common.sh":
            proc = script(name, "--help")
            assert proc.returncode == 0 and "usage" in proc.stdout.lower(), (name, proc.stderr)
            assert proc.stderr == "", name


def test_a_usage_error_exits_2_on_stderr():
    for name, args in [("run_eval_cpu.sh", ()), ("run_export.sh", ()),
                       ("run_transcribe.sh", ("model.ckpt",)), ("launch.sh", ("train",)),
                       ("run_data_prep.sh", ())]:
        proc = script(name, *args)
        assert proc.returncode == 2 and "usage" in proc.stderr.lower(), (name, proc.stdout)


@pytest.mark.parametrize("device", ["gpu", "ascend"])
def test_standalone_and_eval_dry_runs(device, tmp_path):
    ckpt = tmp_path / "my model.ckpt"  # a path with a space
    ckpt.write_bytes(b"x")
    words = dry(f"run_standalone_train_{device}.sh", str(ckpt), "--device_id", "3", "--epochs=2")
    target = {"gpu": "GPU", "ascend": "Ascend"}[device]
    assert words == [PY, f"{REPO}/train.py", "--device_target", target,
                     f"--pre_trained_model_path={ckpt}", "--device_id=3", "--epochs=2"]
    words = dry(f"run_eval_{device}.sh", str(ckpt), "--manifests=a.csv")
    assert words == [PY, f"{REPO}/eval.py", "--device_target", target,
                     f"--checkpoint={ckpt}", "--device_id=0", "--manifests=a.csv"]


def test_distributed_dry_runs(tmp_path):
    words = dry("run_distribute_train_gpu.sh", "4", "--first_device", "2", "--master_port",
                "29555", "--batch_size=16")
    assert words[:2] == ["env", "CUDA_VISIBLE_DEVICES=2,3,4,5"]
    assert words[2:9] == [PY, f"{REPO}/scripts/msrun_node.py", "--worker_num=4",
                          "--local_worker_num=4", "--master_addr=127.0.0.1", "--master_port=29555",
                          f"--log_dir={REPO}/outputs/logs/run_distribute_train_gpu_workers"]
    assert words[10:] == [f"{REPO}/train.py", "--device_target", "GPU", "--distribute=true",
                         "--batch_size=16"]
    words = dry("run_distribute_train_gpu.sh", "2", "--mpirun")
    assert words[2:5] == ["mpirun", "-n", "2"] and "--distribute=true" in words
    table = tmp_path / "rank table.json"
    table.write_text("{}")
    words = dry("run_distribute_train_ascend.sh", "8", "--rank_table", str(table))
    assert words[1] == "ASCEND_RT_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"
    assert f"--rank_table_file={table}" in words
    # an exported RANK_TABLE_FILE (say a stale 8-card table) is kept from a run not given one
    env = dict(os.environ, RANK_TABLE_FILE=str(table))
    words = dry("run_distribute_train_ascend.sh", "2", env=env)
    assert words[:3] == ["env", "-u", "RANK_TABLE_FILE"]
    assert not any(w.startswith("--rank_table_file") for w in words)
    words = dry("run_distribute_train_ascend.sh", "2", "--rank_table", str(table), env=env)
    assert f"--rank_table_file={table}" in words


def test_multi_node_dry_run_names_the_node():
    words = dry("run_distribute_train_gpu.sh", "4", "--num_nodes", "2", "--node_rank", "1",
                "--master_addr", "10.0.0.1", "--master_port", "29555")
    assert words[2:10] == [PY, f"{REPO}/scripts/msrun_node.py", "--worker_num=8",
                           "--local_worker_num=4", "--master_addr=10.0.0.1", "--master_port=29555",
                           f"--log_dir={REPO}/outputs/logs/run_distribute_train_gpu_workers_node1",
                           "--join=True"]
    assert words[10] == "--node_rank=1"
    proc = script("run_distribute_train_cpu.sh", "1", "--num_nodes", "2", "--node_rank", "0")
    assert proc.returncode == 2 and "--num_nodes needs --master_port" in proc.stderr


def test_scripts_run_python_in_the_callers_directory(tmp_path):
    (tmp_path / "c.ckpt").write_bytes(b"x")
    words = dry("run_eval_cpu.sh", "c.ckpt", "--manifests=m.csv", cwd=tmp_path)
    # the positional checkpoint and every --key=value path mean what they mean in the caller's
    # directory: python runs there (no cd), the entry point is named by its full path
    assert words[:2] == [PY, f"{REPO}/eval.py"]
    assert f"--checkpoint={tmp_path}/c.ckpt" in words and "--manifests=m.csv" in words


def test_bad_arguments():
    proc = script("run_eval_gpu.sh", "x.ckpt")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr
    proc = script("run_standalone_train_gpu.sh", "--device_id")
    assert proc.returncode == 2 and "--device_id needs a value" in proc.stderr
    proc = script("run_distribute_train_cpu.sh", "0")
    assert proc.returncode == 2 and "NUM_DEVICES" in proc.stderr
    proc = script("run_standalone_train_ascend.sh", "stray")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr
    proc = script("run_distribute_train_cpu.sh", "2", "--mpirun")
    assert proc.returncode == 2 and "--mpirun is for GPU" in proc.stderr


def test_background_prints_the_pid_that_stops_the_run(tmp_path):
    fake = tmp_path / "fake_python"  # stands for python: records its PID, then works for a while
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 300\n")
    fake.chmod(0o755)
    env = dict(os.environ, LOG_DIR=str(tmp_path), PYTHON=str(fake))
    proc = script("run_standalone_train_gpu.sh", "--background", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"log: {tmp_path}/run_standalone_train_gpu.log" in proc.stdout
    pid = int(re.search(r"PID (\d+)", proc.stdout).group(1))
    deadline = time.time() + 10
    pid_file = tmp_path / "pid"
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")) \
            and time.time() < deadline:  # written, not just created
        time.sleep(0.05)
    assert int(pid_file.read_text()) == pid  # the job itself, not a launcher shell
    os.kill(pid, signal.SIGTERM)
    while time.time() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"PID {pid} still running after kill")


def test_python_version_is_checked_in_one_line(tmp_path):
    fake = tmp_path / "python3.9"  # answers like a Python 3.9 would to the check
    fake.write_text("#!/bin/sh\ncase \"$2\" in *platform*) echo 3.9.18 ;; *) exit 1 ;; esac\n")
    fake.chmod(0o755)
    want = ("error: Python 3.9.18 is not supported: MindSpore 2.10 needs Python 3.10, 3.11 or "
            "3.12 (set PYTHON=/path/to/python3.11)")
    for cmd in (["install.sh"], ["run_distribute_train_cpu.sh", "2"]):  # workers run PYTHON too
        proc = subprocess.run(["bash", f"{REPO}/scripts/{cmd[0]}", *cmd[1:]], capture_output=True,
                              text=True, env=dict(os.environ, PYTHON=str(fake)), timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip() == want, (cmd, proc.stderr)


def test_foreground_returns_the_python_exit_status(tmp_path):
    env = dict(os.environ, LOG_DIR=str(tmp_path), PYTHON="false")  # a failing "python"
    proc = script("run_standalone_train_gpu.sh", env=env)
    assert proc.returncode == 1
    assert f"log: {tmp_path}/run_standalone_train_gpu.log (exit status 1)" in proc.stdout


def test_the_quick_start_takes_the_last_epoch_checkpoint_not_best_avg_or_weights(tmp_path):
    for i, names in enumerate((["DeepSpeech-9_83.ckpt"],
                               ["DeepSpeech-10_83.ckpt", "DeepSpeech-10_83_weights.ckpt"],
                               ["DeepSpeech-best.ckpt", "DeepSpeech-avg.ckpt"])):
        for name in names:  # written in this order: the last ones are the newest
            (tmp_path / name).write_bytes(b"")
            os.utime(tmp_path / name, (1_000_000 + i, 1_000_000 + i))
    cmd = f"set -euo pipefail; source {REPO}/scripts/common.sh; newest_checkpoint {tmp_path}; " \
          f"echo \"[$(newest_checkpoint {tmp_path}/none)]\""
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"{tmp_path}/DeepSpeech-10_83.ckpt", "[]"]


def test_python_tools_print_help_and_exit_0(tmp_path):
    """From another folder: download.py is runnable on its own; train.py lists the config."""
    import sys
    for tool in ("data_prep/download.py", "train.py", "eval.py", "average_checkpoints.py"):
        proc = subprocess.run([sys.executable, os.path.join(REPO, tool), "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), (tool, proc.stderr)
    keys = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--help"],
                          capture_output=True, text=True, timeout=120).stdout
    for line in ("train:", "  accumulate_steps: 1", "decode:", "augment:", "  speed_perturb:"):
        assert any(k.startswith(line) for k in keys.splitlines()), line


def test_download_tool_fetches_a_local_file_url(tmp_path):
    import sys
    (tmp_path / "src.bin").write_bytes(b"abc" * 1000)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "data_prep/download.py"),
                           (tmp_path / "src.bin").as_uri(), "out/copy.bin"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/copy.bin").read_bytes() == b"abc" * 1000


def test_install_makes_and_uses_a_venv_where_the_system_python_refuses_pip(tmp_path):
    """A Debian/Ubuntu system Python (PEP 668) answers 'pip install' with
    externally-managed-environment: install.sh must create .venv and install into it."""
    import shutil
    import sys
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("common.sh", "install.sh"):
        shutil.copy(os.path.join(REPO, "scripts", name), repo / "scripts" / name)
    (repo / "requirements.txt").write_text("# nothing to fetch in this test\n")
    stubs, log = tmp_path / "bin", tmp_path / "calls.log"
    stubs.mkdir()
    base = getattr(sys, "_base_executable", sys.executable)
    (stubs / "python3").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        'if [ "$1" = -m ] && [ "$2" = pip ]; then\n'
        '  echo "error: externally-managed-environment" >&2; exit 1\nfi\n'
        f'exec {base} "$@"\n')
    for other in ("python3.12", "python3.11", "python3.10"):  # none of these on this machine
        (stubs / other).write_text("#!/bin/sh\nexit 127\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = f"{stubs}:/usr/bin:/bin"
    proc = subprocess.run(["bash", str(repo / "scripts/install.sh")], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"installed into {repo}/.venv" in proc.stdout
    assert "-m venv" in log.read_text() and "-m pip" not in log.read_text()
    assert launcher_python(env, repo) == f"{repo}/.venv/bin/python"
    again = subprocess.run(["bash", str(repo / "scripts/install.sh")], capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode == 0 and "creating" not in again.stdout  # reused, not made anew
