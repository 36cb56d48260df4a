"""Data-parallel training for real: msrun with 2 CPU workers vs a single-process emulation."""
import os

import numpy as np

from conftest import run
from test_end_to_end import head


def test_two_workers_equal_single_process_on_both_shards(ms_context, sample_data, tmp_path):
    ms = ms_context
    from mindspore import ops
    from src.builders import build_network, load_weights
    from src.config import load_config
    from src.dataset import load_utterances, make_encoder, training_source
    from src.deepspeech2 import CTCLossCell
    from src.lr_generator import get_lr
    from src.training import build_optimizer

    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 10)
    overrides = ["--hidden_size=16", "--num_layers=1", "--batch_size=2", "--epochs=1",
                 "--num_parallel_workers=1", f"--train_manifest={train}", "--val_manifest=",
                 "--warmup_steps=2", "--max_grad_norm=5",
                 # Adam turns a gradient element near zero into a full +-lr step whose sign any
                 # rounding difference (all-reduce order) flips; a larger eps keeps the comparison
                 # about the gradients.
                 "--eps=1e-3"]
    cfg = load_config(overrides)
    init = build_network(cfg)
    ms.save_checkpoint(init, str(tmp_path / "init.ckpt"))

    ckpt_dir, log_dir = tmp_path / "ckpt", tmp_path / "log"
    env = dict(os.environ, LOG_DIR=str(tmp_path / "launcher_logs"))
    proc = run(["bash", "scripts/run_distribute_train_cpu.sh", "2", str(tmp_path / "init.ckpt"),
                *overrides, f"--checkpoint_dir={ckpt_dir}", f"--log_dir={log_dir}"], env=env,
               timeout=600)
    assert "exit status 0" in proc.stdout
    assert (log_dir / "train.log").is_file() and (log_dir / "train_rank1.log").is_file()
    assert "rank 1 of 2" in (log_dir / "train_rank1.log").read_text()
    ckpts = sorted(p.name for p in ckpt_dir.iterdir())
    assert ckpts == ["DeepSpeech-1_3.ckpt"]  # 10 utterances / 2 per batch = 5 -> 6 batches, 3 each

    # the same steps in one process: mean of the two shards' gradients, then clip and Adam
    encoder = make_encoder(cfg)
    utts, _ = load_utterances(train, cfg, encoder, max_duration=cfg.data.max_duration)
    shards = [training_source(utts, cfg, rank=r, group_size=2) for r in range(2)]
    net = build_network(cfg)
    load_weights(net, ms.load_checkpoint(str(tmp_path / "init.ckpt")))
    lr = get_lr(cfg.train.learning_rate * 2, 1, shards[0].steps_per_epoch,
                cfg.train.warmup_steps, cfg.train.hold_epochs, cfg.train.lr_anneal)
    optimizer = build_optimizer(net, cfg, lr)
    loss_net = CTCLossCell(net, encoder.blank_id)
    loss_net.set_train(True)
    weights = optimizer.parameters
    grad_fn = ms.grad(loss_net, grad_position=None, weights=weights)
    for step in range(shards[0].steps_per_epoch):
        grads = [grad_fn(*map(ms.Tensor, shard[step])) for shard in shards]
        mean = tuple((a + b) / 2 for a, b in zip(*grads))
        optimizer(ops.clip_by_global_norm(mean, cfg.train.max_grad_norm))
    distributed = ms.load_checkpoint(str(ckpt_dir / "DeepSpeech-1_3.ckpt"))
    for p in net.trainable_params():
        np.testing.assert_allclose(distributed[p.name].asnumpy(), p.asnumpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=p.name)
