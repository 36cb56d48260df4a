"""Time the repository's own training step (or, with --infer, its inference pass) on random
data; prints one JSON line.

    python benchmarks/train_step.py --hidden 256 --layers 3 --batch 8 --frames 1000 --steps 3
    python benchmarks/train_step.py --infer --hidden 1024 --layers 5 --batch 1 --frames 3000

Same flags and output fields as ../shared/bench/torch_ds2_reference.py (the PyTorch reference of
the same network), so the two can be run side by side: "step_s_median" over --steps timed steps
after one warm-up step (graph compile), "frames_per_s" = batch * frames / step_s_median,
"peak_rss_mb" of this process. The step is the one train.py builds (network, CTC loss, Adam,
clipping) with the config's defaults; --fast_conv 0 times the plain nn.Conv2d path.
--parts also times, on the same shapes, forward+backward of the conv front-end and of one
bidirectional LSTM layer (the first, and one of the later ones): where a step's time goes.
--freeze times the step with train.freeze prefixes frozen (fine-tuning the last layers only).
--accumulate N times one optimizer step over N micro-batches of --batch (train.accumulate_steps:
the effective batch is N x --batch; "frames_per_s" counts all N).
--infer times the inference pass as eval.py and transcribe.py run it (InferenceNet in eval mode,
log-softmax, the log-probabilities copied to numpy) with "mode": "infer", like the reference's
--infer; "mode" is "train" otherwise.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=1000, help="spectrogram frames (10 ms each)")
    p.add_argument("--label-len", type=int, default=100, help="mean characters per utterance")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    p.add_argument("--fast_conv", type=int, default=1, choices=[0, 1])
    p.add_argument("--parts", action="store_true", help="also time the front-end and one LSTM")
    p.add_argument("--freeze", default="",
                   help="train.freeze prefixes, comma-separated (e.g. conv,RNN.lstms.0)")
    p.add_argument("--accumulate", type=int, default=1,
                   help="micro-batches of --batch per optimizer step (train.accumulate_steps)")
    p.add_argument("--infer", action="store_true",
                   help="time the inference pass (eval mode, log-softmax, no gradients) instead")
    a = p.parse_args(argv)

    from src.config import check_sections, load_config
    from src.env import prepare_environment
    cfg = load_config([f"--device_target={a.device_target}", f"--hidden_size={a.hidden}",
                       f"--num_layers={a.layers}", f"--cpu_fast_conv={bool(a.fast_conv)}"],
                      checks=False)
    prepare_environment(cfg.device_target, native_conv=not a.fast_conv)  # before NumPy
    check_sections(cfg)
    import mindspore as ms
    import numpy as np

    from src.context import setup_context
    from src.conv_spec import output_lengths
    from src.deepspeech2 import InferenceNet, build_network
    from src.inference import eval_mode, log_probs
    from src.lr_generator import get_lr
    from src.train_step import AccumulatingStep, build_optimizer, build_train_step

    setup_context(cfg)
    rng = np.random.default_rng(0)
    net = build_network(cfg)
    if a.freeze:
        from src.freeze import freeze
        freeze(net, a.freeze.split(","))
    if not a.infer:  # no optimizer state in an inference measurement (peak RSS)
        lr = get_lr(1e-4, 1, a.steps + 1)
        step = build_train_step(net, build_optimizer(net, cfg, lr), cfg, blank=28)
        step.set_train(True)
        accumulating = AccumulatingStep(step) if a.accumulate > 1 else None
    t_out = int(output_lengths(a.frames))
    lens = rng.integers(int(a.label_len * 0.8), int(a.label_len * 1.2) + 1, size=a.batch)
    lens = np.minimum(lens, t_out // 2)
    targets = np.zeros((a.batch, int(lens.max())), np.int32)
    for b, n in enumerate(lens):
        targets[b, :n] = rng.integers(0, 28, size=n)
    inputs = (ms.Tensor(rng.standard_normal((a.batch, 1, 161, a.frames)).astype(np.float32)),
              ms.Tensor(np.full(a.batch, a.frames, np.int32)), ms.Tensor(targets),
              ms.Tensor(lens.astype(np.int32)))
    times, infer_net = [], InferenceNet(net)
    x, lengths = inputs[0].asnumpy(), inputs[1].asnumpy()
    for _ in range(a.steps + 1):
        t0 = time.perf_counter()
        if a.infer:
            with eval_mode(infer_net):
                loss = float(log_probs(infer_net, x, lengths)[0].mean())
        elif accumulating is not None:  # the same micro-batch N times: one step's cost
            loss = float(accumulating([inputs] * a.accumulate)[0].asnumpy())
        else:
            loss = float(step(*inputs)[0].asnumpy())
        times.append(time.perf_counter() - t0)
    med = float(np.median(times[1:]))
    parts = time_parts(net, inputs, a.steps) if a.parts else {}
    print(json.dumps({
        "framework": "mindspore", "version": ms.__version__, "hidden": a.hidden,
        "layers": a.layers, "batch": a.batch, "frames": a.frames, "device": a.device_target,
        "fast_conv": bool(a.fast_conv), "threads": os.cpu_count(),
        "mode": "infer" if a.infer else "train", "freeze": a.freeze, "accumulate": a.accumulate,
        "params": sum(int(np.prod(q.shape)) for q in net.trainable_params()),
        "first_step_s": times[0], "step_s_median": med, "step_s_all": times[1:],
        "frames_per_s": a.batch * a.accumulate * a.frames / med, "loss": loss,
        "parts_fwd_bwd_s": parts,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def time_parts(net, inputs, steps):
    """Median forward+backward seconds of the front-end and of LSTM layers 0 and 1 (if any)."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn, ops

    class SumOut(nn.Cell):
        def __init__(self, cell):
            super().__init__()
            self.cell = cell

        def construct(self, *args):
            return self.cell(*args).sum()

    class GradOf(nn.Cell):
        def __init__(self, cell):
            super().__init__()
            self.net = SumOut(cell)
            self.weights = ms.ParameterTuple(cell.trainable_params())
            self.grad = ops.GradOperation(get_by_list=True)

        def construct(self, *args):
            return self.grad(self.net, self.weights)(*args)

    def median_time(cell, *args):
        step, times = GradOf(cell), []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            [g.asnumpy() for g in step(*args)]
            times.append(time.perf_counter() - t0)
        return round(float(np.median(times[1:])), 3)

    x, lengths = inputs[0], inputs[1]
    conv = net.conv(x, lengths)  # (B, C, F', T')
    b, c, f, t = conv.shape
    rnn_in = conv.view(b, c * f, t).transpose(2, 0, 1)  # (T', B, C*F')
    out_len = ms.Tensor(np.full(b, t, np.int32))
    parts = {"conv_front_end": median_time(net.conv, x, lengths),
             "lstm_layer_0": median_time(net.RNN.lstms[0], rnn_in, out_len)}
    if len(net.RNN.lstms) > 1:
        hidden = net.RNN.lstms[0](rnn_in, out_len)  # (T', B, H)
        parts["lstm_layer_1"] = median_time(net.RNN.lstms[1], hidden, out_len)
    return parts


if __name__ == "__main__":
    main()
