"""Data-parallel training for real: msrun with 2 CPU workers vs a single-process emulation, and
the multi-node form (two msrun invocations of one worker each, node ranks 0 and 1, master on
127.0.0.1) vs the single-node run."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run
from test_end_to_end import head


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def single_node(ms_context, sample_data, tmp_path_factory):
    """One msrun with 2 CPU workers: (folder, overrides, its final checkpoint's parameters)."""
    ms = ms_context
    from src.config import load_config
    from src.deepspeech2 import build_network
    tmp_path = tmp_path_factory.mktemp("distributed")
    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 10)
    val = head(sample_data / "libri_val_manifest.csv", tmp_path / "val.csv", 7)
    overrides = ["--hidden_size=16", "--num_layers=1", "--batch_size=2", "--epochs=1",
                 "--num_parallel_workers=1", f"--train_manifest={train}", f"--val_manifest={val}",
                 "--warmup_steps=2", "--max_grad_norm=5",
                 # Adam turns a gradient element near zero into a full +-lr step whose sign any
                 # rounding difference (all-reduce order) flips; a larger eps keeps the comparison
                 # about the gradients.
                 "--eps=1e-3"]
    ms.save_checkpoint(build_network(load_config(overrides)), str(tmp_path / "init.ckpt"))
    ckpt_dir, log_dir = tmp_path / "ckpt", tmp_path / "log"
    # msrun starts workers with a bare `python`: here that name is a broken interpreter, so the
    # run passes only if the workers use the launcher's own Python
    wrong = tmp_path / "bin"
    wrong.mkdir()
    (wrong / "python").write_text("#!/bin/sh\necho 'not this python' >&2\nexit 3\n")
    (wrong / "python").chmod(0o755)
    env = dict(os.environ, LOG_DIR=str(tmp_path / "launcher_logs"),
               PATH=f"{wrong}:{os.environ['PATH']}")
    proc = run(["bash", "scripts/run_distribute_train_cpu.sh", "2", str(tmp_path / "init.ckpt"),
                *overrides, f"--checkpoint_dir={ckpt_dir}", f"--log_dir={log_dir}"], env=env,
               timeout=600)
    assert "exit status 0" in proc.stdout
    assert "[INFO] DISTRIBUTED" not in proc.stdout  # the cluster's chatter stays in worker logs
    assert (log_dir / "train.log").is_file() and (log_dir / "train_rank1.log").is_file()
    assert "rank 1 of 2" in (log_dir / "train_rank1.log").read_text()
    ckpts = sorted(p.name for p in ckpt_dir.glob("DeepSpeech*"))
    # 10 utterances / 2 per batch = 5 -> 6 batches, 3 each; the validated epoch is the best
    assert ckpts == ["DeepSpeech-1_3.ckpt", "DeepSpeech-best.ckpt", "DeepSpeech-best.json"]
    return tmp_path, overrides, ms.load_checkpoint(str(ckpt_dir / "DeepSpeech-1_3.ckpt"))


def test_two_workers_equal_single_process_on_both_shards(ms_context, single_node):
    tmp_path, overrides, distributed = single_node
    net = one_process(ms_context, tmp_path, overrides)
    for p in net.trainable_params():
        np.testing.assert_allclose(distributed[p.name].asnumpy(), p.asnumpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=p.name)


def one_process(ms, tmp_path, overrides):
    """The network after the run's steps in one process: per step, the mean of the two shards'
    gradients, then clip and Adam."""
    from mindspore import ops

    from src.checkpoints import load_weights
    from src.config import load_config
    from src.dataset import load_utterances, training_source
    from src.deepspeech2 import CTCLossCell, build_network
    from src.lr_generator import get_lr
    from src.text import make_encoder
    from src.train_step import build_optimizer

    cfg = load_config(overrides)
    encoder = make_encoder(cfg)
    utts, _ = load_utterances(cfg.data.train_manifest, cfg.features, encoder,
                              max_duration=cfg.data.max_duration)
    shards = [training_source(utts, cfg, rank=r, group_size=2) for r in range(2)]
    net = build_network(cfg)
    load_weights(net, ms.load_checkpoint(str(tmp_path / "init.ckpt")))
    epochs, spe = cfg.train.epochs, shards[0].steps_per_epoch
    lr = get_lr(cfg.train.learning_rate * 2, epochs, spe, cfg.train.warmup_steps,
                cfg.train.hold_epochs, cfg.train.lr_anneal)
    optimizer = build_optimizer(net, cfg, lr)
    loss_net = CTCLossCell(net, encoder.blank_id)
    loss_net.set_train(True)
    grad_fn = ms.grad(loss_net, grad_position=None, weights=optimizer.parameters)
    for step in range(epochs * spe):
        grads = [grad_fn(*map(ms.Tensor, shard[step][:4])) for shard in shards]  # no flags
        mean = tuple((a + b) / 2 for a, b in zip(*grads))
        optimizer(ops.clip_by_global_norm(mean, cfg.train.max_grad_norm))
    return net


def test_two_epochs_with_validation_train_and_validate_as_one_process(ms_context, single_node):
    """Validating between epochs leaves the network in training mode: epoch 2 (new batch shapes,
    new train-step graphs) trains as one process does, the ranks' gradient all-reduces stay in
    the same order (a network left in eval mode gave graphs with another order: "RunRingAllReduce]
    Memcpy error" in epoch 2), and epoch 2's WER/CER equals eval.py's on the whole manifest."""
    ms = ms_context
    tmp_path, overrides, _ = single_node
    overrides = [*overrides, "--epochs=2"]
    ckpt_dir, log_dir = tmp_path / "ckpt_2ep", tmp_path / "log_2ep"
    proc = run(["bash", "scripts/run_distribute_train_cpu.sh", "2", str(tmp_path / "init.ckpt"),
                *overrides, f"--checkpoint_dir={ckpt_dir}", f"--log_dir={log_dir}"],
               env=dict(os.environ, LOG_DIR=str(tmp_path / "launcher_logs_2ep")), timeout=600)
    assert "exit status 0" in proc.stdout
    distributed = ms.load_checkpoint(str(ckpt_dir / "DeepSpeech-2_3.ckpt"))
    net = one_process(ms, tmp_path, overrides)
    for p in net.trainable_params():
        np.testing.assert_allclose(distributed[p.name].asnumpy(), p.asnumpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=p.name)
    val = [r for r in map(json.loads, (log_dir / "metrics.jsonl").open()) if "val_wer" in r]
    assert [r["epoch"] for r in val] == [1, 2]
    run([sys.executable, f"{REPO}/eval.py", f"--checkpoint={ckpt_dir}/DeepSpeech-2_3.ckpt",
         f"--manifests={tmp_path}/val.csv", f"--output_dir={tmp_path}/eval_2ep"])
    whole = json.loads((tmp_path / "eval_2ep" / "summary.json").read_text())["results"]["val"]
    assert whole["utterances"] == 7
    assert (val[1]["val_wer"], val[1]["val_cer"]) == (whole["wer"], whole["cer"])


def test_two_nodes_of_one_worker_equal_one_node_of_two(ms_context, single_node):
    tmp_path, overrides, one_node = single_node
    ckpt_dir, log_dir = tmp_path / "ckpt_nodes", tmp_path / "log_nodes"
    env = dict(os.environ, LOG_DIR=str(tmp_path / "launcher_logs_nodes"))
    port = str(free_port())
    nodes = [subprocess.Popen(
        ["bash", f"{REPO}/scripts/run_distribute_train_cpu.sh", "1", str(tmp_path / "init.ckpt"),
         "--num_nodes", "2", "--node_rank", str(rank), "--master_addr", "127.0.0.1",
         "--master_port", port, *overrides, f"--checkpoint_dir={ckpt_dir}",
         f"--log_dir={log_dir}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for rank, (node, out) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0 and "exit status 0" in out, (rank, out[-3000:])
        assert f"log: {tmp_path}/launcher_logs_nodes/run_distribute_train_cpu_node{rank}.log" in out
    assert "rank 1 of 2" in (log_dir / "train_rank1.log").read_text()
    assert sorted(p.name for p in ckpt_dir.glob("DeepSpeech*")) == [
        "DeepSpeech-1_3.ckpt", "DeepSpeech-best.ckpt", "DeepSpeech-best.json"]
    import mindspore as ms
    two_nodes = ms.load_checkpoint(str(ckpt_dir / "DeepSpeech-1_3.ckpt"))
    assert int(two_nodes["step_num"].asnumpy()) == int(one_node["step_num"].asnumpy()) == 3
    for name, value in one_node.items():
        if name.startswith(("conv.", "RNN.", "fc.", "moment")):
            np.testing.assert_allclose(two_nodes[name].asnumpy(), value.asnumpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=name)


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """Rank 1's loss is non-finite (its gradients finite) at steps 2 and 3: both ranks skip both
    steps, stop together at max_bad_steps=2 (no rank left waiting in an all-reduce), and keep
    equal weights."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, f"{REPO}/scripts/msrun_node.py", "--worker_num=2", "--local_worker_num=2",
         "--master_addr=127.0.0.1", f"--master_port={free_port()}", f"--log_dir={tmp_path}/logs",
         "--join=True", f"{REPO}/tests/distributed_guard_worker.py", str(out)],
        capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("worker_*.log"))
    assert proc.returncode == 0, logs[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["loss_finite"] for s in ranks[1]["steps"]] == [True, False, False]
    assert [s["loss_finite"] for s in ranks[0]["steps"]] == [True, True, True]
    for r in ranks:
        assert [s["ok"] for s in r["steps"]] == [True, False, False] and r["stopped_at"] == 3
    np.testing.assert_array_equal(ranks[0]["weights"]["fc.module.weight"],
                                  ranks[1]["weights"]["fc.module.weight"])


def test_validation_sharded_over_ranks_equals_one_process(single_node):
    """Both ranks decode half of the validation manifest and sum the error counts: the WER/CER
    rank 0 records equal eval.py decoding the whole manifest with the same checkpoint."""
    tmp_path, overrides, _ = single_node
    records = [json.loads(line) for line in (tmp_path / "log" / "metrics.jsonl").open()]
    val = [r for r in records if "val_wer" in r]
    assert len(val) == 1
    assert "validation: WER" in (tmp_path / "log" / "train_rank1.log").read_text()
    run([sys.executable, f"{REPO}/eval.py", f"--checkpoint={tmp_path}/ckpt/DeepSpeech-1_3.ckpt",
         f"--manifests={tmp_path}/val.csv", f"--output_dir={tmp_path}/eval"])
    whole = json.loads((tmp_path / "eval" / "summary.json").read_text())["results"]["val"]
    assert whole["utterances"] == 7
    assert val[0]["val_wer"] == whole["wer"] and val[0]["val_cer"] == whole["cer"]
