"""Fine-tuning controls: frozen layers stay bit-identical (weights and BatchNorm statistics),
have no Adam moments, and the others still train."""
import numpy as np
import pytest

from conftest import tiny_batch, tiny_step


def test_frozen_layers_and_their_batchnorm_statistics_do_not_change(ms_context):
    ms = ms_context
    from src.freeze import freeze
    from src.train_step import build_optimizer, build_train_step
    cfg, net, _ = tiny_step(["--num_layers=2"])
    frozen = freeze(net, ["conv", "RNN.lstms.0"])
    assert "conv.bn1.moving_mean" in frozen and "RNN.lstms.0.weight_hh_l0_reverse" in frozen
    assert not any(n.startswith(("RNN.lstms.1", "fc")) for n in frozen)
    optimizer = build_optimizer(net, cfg, [1e-2] * 4)
    step = build_train_step(net, optimizer, cfg, blank=28)
    step.set_train(True)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    for _ in range(3):
        step(*tiny_batch(ms))
    after = {p.name: p.asnumpy() for p in net.get_parameters()}
    for name in before:
        same = np.array_equal(before[name], after[name])
        assert same == (name in frozen), name  # frozen: bit-identical; the rest trained
    moments = [p.name for p in optimizer.moment1]
    assert not any(n.split(".", 1)[1] in frozen for n in moments)  # no moments kept for them
    assert any("RNN.lstms.1" in n for n in moments)


def test_a_prefix_matching_nothing_is_refused(ms_context):
    from src.errors import UserError
    from src.freeze import freeze
    _, net, _ = tiny_step()
    with pytest.raises(UserError, match="'RNN.lstms.7' matches no parameter"):
        freeze(net, ["RNN.lstms.7"])
    with pytest.raises(UserError, match="'RNN.lstm' matches no parameter"):
        freeze(net, ["RNN.lstm"])  # whole name components only


def test_best_tracker_keeps_the_best_and_counts_patience_across_a_restart(ms_context, tmp_path):
    from src.best import BEST_CKPT, BEST_RECORD, BestTracker
    _, net, _ = tiny_step()
    best = BestTracker("val_cer", 2, str(tmp_path), resumed=False)
    assert best.update(50.0, 1, 10, net) is False
    saved = (tmp_path / BEST_CKPT).read_bytes()
    assert best.update(60.0, 2, 20, net) is False  # worse: nothing written
    assert (tmp_path / BEST_CKPT).read_bytes() == saved
    again = BestTracker("val_cer", 2, str(tmp_path), resumed=True)  # a restart reads it back
    assert again.record["epoch"] == 1 and again.record["value"] == 50.0
    assert again.update(55.0, 3, 30, net) is True  # 2 epochs after the best: stop
    assert BestTracker("val_cer", 2, str(tmp_path), resumed=False).record is None  # fresh run
    assert BestTracker("val_wer", 2, str(tmp_path), resumed=True).record is None  # other metric
    import json
    assert json.loads((tmp_path / BEST_RECORD).read_text())["checkpoint"] == BEST_CKPT


def test_early_stop_keeps_the_best_checkpoint_and_a_resume_keeps_counting(sample_data, tmp_path):
    """A learning rate of 1e-12 with the front-end (and so every BatchNorm) frozen leaves the
    validation figures unchanged: epoch 1 stays the best, patience 1 stops after epoch 2."""
    import json
    import sys

    from conftest import REPO, run
    from test_end_to_end import head
    head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 8)
    head(sample_data / "libri_val_manifest.csv", tmp_path / "val.csv", 3)
    common = [sys.executable, f"{REPO}/train.py", "--hidden_size=8", "--num_layers=1",
              "--batch_size=4", "--train_manifest=train.csv", "--val_manifest=val.csv",
              "--learning_rate=1e-12", "--warmup_steps=0", "--freeze=conv",
              "--checkpoint_dir=ck", "--log_dir=log", "--keep_checkpoint_max=1",
              "--num_parallel_workers=1"]
    proc = run([*common, "--epochs=6", "--early_stop_patience=1"], cwd=tmp_path)
    assert "early stop: val_cer has not improved for 1 epochs" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "ck").glob("DeepSpeech*")) == [
        "DeepSpeech-2_2.ckpt", "DeepSpeech-best.ckpt", "DeepSpeech-best.json"]
    record = json.loads((tmp_path / "ck" / "DeepSpeech-best.json").read_text())
    assert (record["epoch"], record["step"], record["metric"]) == (1, 2, "val_cer")
    vals = [json.loads(line) for line in (tmp_path / "log" / "metrics.jsonl").read_text()
            .splitlines() if "val_cer" in line]
    assert [v["epoch"] for v in vals] == [1, 2] and vals[0]["val_cer"] == record["value"]
    png = tmp_path / "log" / "learning_curves.png"
    assert f"learning curves: {png}" in proc.stderr and png.read_bytes()[:4] == b"\x89PNG"

    proc = run([*common, "--epochs=6", "--early_stop_patience=2", "--resume=auto"], cwd=tmp_path)
    assert "best so far: val_cer" in proc.stderr and "at epoch 1" in proc.stderr
    assert "early stop: val_cer has not improved for 2 epochs" in proc.stderr  # epoch 3
    assert json.loads((tmp_path / "ck" / "DeepSpeech-best.json").read_text())["epoch"] == 1
    assert (tmp_path / "ck" / "DeepSpeech-3_2.ckpt").is_file()
    evaluated = run([sys.executable, f"{REPO}/eval.py", "--checkpoint=ck/DeepSpeech-best.ckpt",
                     "--manifests=val.csv", "--output_dir=ev"], cwd=tmp_path)
    assert f"CER {record['value']:.2f}%" in evaluated.stdout  # the best epoch's own figure


def test_checkpoint_averaging_by_files_last_and_best(ms_context, tmp_path):
    import json
    import sys

    from conftest import REPO, run
    ms = ms_context
    from src.config import load_config
    from src.deepspeech2 import build_network
    cfg = load_config(["--hidden_size=8", "--num_layers=1"])
    ck = tmp_path / "ck"
    ck.mkdir()
    values = []
    for epoch in (1, 2, 3):  # epoch-end checkpoints of a 5-step epoch, different weights
        ms.set_seed(epoch)
        net = build_network(cfg)
        for p in net.get_parameters():
            if "moving" in p.name:  # BatchNorm statistics are averaged too
                p.set_data(ms.Tensor(np.full(p.shape, float(epoch), np.float32)))
        ms.save_checkpoint(net, str(ck / f"DeepSpeech-{epoch}_5.ckpt"))
        values.append({p.name: p.asnumpy().copy() for p in net.get_parameters()})
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps(r) + "\n" for r in [
            {"step": 5, "epoch": 1, "loss": 3.0},
            {"step": 5, "epoch": 1, "val_wer": 90.0, "val_cer": 40.0},
            {"step": 10, "epoch": 2, "val_wer": 95.0, "val_cer": 60.0},
            {"step": 15, "epoch": 3, "val_wer": 80.0, "val_cer": 30.0}]))

    def averaged(*args):
        run([sys.executable, f"{REPO}/average_checkpoints.py", *args, "--out", "avg.ckpt"],
            cwd=tmp_path)
        return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(tmp_path / "avg.ckpt")).items()}

    def mean_of(*epochs):
        return {k: np.mean([values[e - 1][k] for e in epochs], axis=0) for k in values[0]}

    for args, epochs in ((["ck/DeepSpeech-1_5.ckpt", "ck/DeepSpeech-2_5.ckpt"], (1, 2)),
                         (["--checkpoint_dir=ck", "--last=2"], (2, 3)),
                         (["--checkpoint_dir=ck", "--best=2", "--metrics=metrics.jsonl"], (1, 3)),
                         (["--checkpoint_dir=ck", "--best=2", "--metrics=metrics.jsonl",
                           "--metric=wer"], (1, 3))):
        got, want = averaged(*args), mean_of(*epochs)
        assert set(got) == set(want), args
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert averaged("--checkpoint_dir=ck", "--last=2")["conv.bn1.moving_mean"][0] == 2.5
    bad = run([sys.executable, f"{REPO}/average_checkpoints.py", "--checkpoint_dir=ck",
               "--best=3", "--metrics=none.jsonl"], ok=False, cwd=tmp_path)
    assert bad.returncode == 1 and "metrics file not found" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_learning_curves_read_the_metrics_and_draw_both_panels(tmp_path):
    import json
    import sys

    import matplotlib.image

    from conftest import REPO, run
    from src.curves import read_metrics
    lines = [{"step": 10, "epoch": 1, "loss": 5.0, "lr": 1e-3}, {"step": 20, "epoch": 1,
             "loss": None}, {"step": 20, "epoch": 1, "val_wer": 90.0, "val_cer": 50.0},
             {"step": 30, "epoch": 2, "loss": 3.0}, {"step": 40, "epoch": 2, "val_wer": 70.0,
             "val_cer": 30.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert read_metrics(tmp_path / "metrics.jsonl") == ([(10, 5.0), (30, 3.0)],
                                                        [(1, 90.0, 50.0), (2, 70.0, 30.0)])
    proc = run([sys.executable, f"{REPO}/plot_curves.py", "metrics.jsonl"], cwd=tmp_path)
    png = tmp_path / "learning_curves.png"
    assert f"learning curves: {png}" in proc.stdout
    image = matplotlib.image.imread(png)  # (H, W, 4)
    assert image.shape[0] > 300 and image.shape[1] > 300 and image[..., :3].std() > 0.05
    (tmp_path / "empty.jsonl").write_text("")
    bad = run([sys.executable, f"{REPO}/plot_curves.py", "empty.jsonl"], ok=False, cwd=tmp_path)
    assert bad.returncode == 1 and "holds no loss or validation lines" in bad.stderr


def test_accumulated_micro_batches_equal_one_big_batch(ms_context):
    """Gradients of 1 + 3 utterances (padded to 25 and 40 frames) accumulated == those of the
    4 at once (ms.value_and_grad of the loss), and the optimizer receives the same step."""
    from mindspore import nn

    from src.train_step import AccumulatingStep
    T = ms_context.Tensor
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 161, 40)).astype(np.float32)
    lens = np.array([40, 33, 40, 25], np.int32)
    for j, n in enumerate(lens):
        x[j, :, :, n:] = 0.0
    tg = np.array([[1, 2, 3], [4, 5, 0], [6, 7, 8], [9, 0, 0]], np.int32)
    tl = np.array([3, 2, 3, 1], np.int32)
    full = (T(x), T(lens), T(tg), T(tl))
    parts = [(T(x[3:, :, :, :25]), T(lens[3:]), T(tg[3:, :1]), T(tl[3:])),
             (T(x[:3]), T(lens[:3]), T(tg[:3]), T(tl[:3]))]
    steps = []
    for _ in range(2):
        _, net, step = tiny_step()
        for _, cell in net.cells_and_names():  # fixed statistics: the one case where they agree
            if isinstance(cell, nn.BatchNorm2d):
                cell.use_batch_statistics = False
        steps.append(step)
    ms_context.load_param_into_net(steps[1].network, {
        p.name: ms_context.Parameter(p.data.copy(), p.name)
        for p in steps[0].network.get_parameters()})
    big, accumulated = steps
    ref_loss, ref = ms_context.value_and_grad(big.network, None, big.weights)(*full)
    loss, grads = AccumulatingStep(accumulated).gradients(parts)
    assert float(loss.asnumpy()) == pytest.approx(float(ref_loss.asnumpy()), rel=1e-6)
    for p, r, g in zip(big.weights, ref, grads):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-4, atol=1e-5, err_msg=p.name)

    big(*full)
    AccumulatingStep(accumulated)(parts)
    for moment, atol in (("moment1", 1e-6), ("moment2", 1e-8)):  # 0.1 g and 0.001 g^2
        for a, b in zip(getattr(big.optimizer, moment), getattr(accumulated.optimizer, moment)):
            np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-3, atol=atol,
                                       err_msg=a.name)
    assert int(accumulated.optimizer.global_step.asnumpy().reshape(-1)[0]) == 1  # one step


def test_averaging_finds_the_runs_metrics_and_refuses_bad_requests(ms_context, tmp_path):
    import json
    import sys

    from conftest import REPO, run
    from src.config import load_config
    from src.deepspeech2 import build_network
    from src.run_folder import RunFolder
    ms = ms_context
    ck, log = tmp_path / "ck", tmp_path / "log"
    folder = RunFolder.claim(str(ck), str(log), continuing=False)
    net = build_network(load_config(["--hidden_size=8", "--num_layers=1"]))
    for epoch in (1, 2, 3):
        ms.save_checkpoint(net, str(ck / f"DeepSpeech-{epoch}_5.ckpt"))
        folder.add(str(ck / f"DeepSpeech-{epoch}_5.ckpt"))
    (log / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 5, "epoch": 1, "val_wer": 90.0, "val_cer": 40.0},
        {"step": 10, "epoch": 2, "val_wer": 95.0, "val_cer": 60.0},
        {"step": 15, "epoch": 3, "val_wer": 80.0, "val_cer": 30.0}]) + '{"step": 20, "ep')
    del folder
    tool = [sys.executable, f"{REPO}/average_checkpoints.py"]
    done = run([*tool, "--checkpoint_dir=ck", "--best=2"], cwd=tmp_path)  # metrics from run.json
    assert "DeepSpeech-1_5.ckpt" in done.stdout and "DeepSpeech-3_5.ckpt" in done.stdout
    assert "DeepSpeech-2_5.ckpt" not in done.stdout
    for args, said in ((["--checkpoint_dir=ck", "--last=-1"], "must be a whole number >= 1"),
                       (["--checkpoint_dir=missing", "--last=2"], "checkpoint folder not found"),
                       (["ck/DeepSpeech-1_5.ckpt", "ck/DeepSpeech-2_5.ckpt", "--out",
                         "ck/DeepSpeech-2_5.ckpt"], "is one of the checkpoints being averaged")):
        before = (ck / "DeepSpeech-2_5.ckpt").read_bytes()
        bad = run([*tool, *args], ok=False, cwd=tmp_path)
        assert bad.returncode != 0 and said in bad.stderr and "Traceback" not in bad.stderr, args
        assert (ck / "DeepSpeech-2_5.ckpt").read_bytes() == before
