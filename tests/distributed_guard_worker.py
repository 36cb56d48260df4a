"""One worker of test_distributed's non-finite test (run by msrun, 2 CPU workers).

Rank 1's loss is made non-finite at steps 1 and 2 while its gradients stay finite (an added
inf behind stop_gradient), the case where a rank-local decision would differ between ranks.
Each rank writes what it saw to <out>/rank<r>.json.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
from src.env import prepare_environment  # noqa: E402  (before mindspore is imported)

prepare_environment("CPU")


def main(out):
    import logging

    import mindspore as ms
    import numpy as np
    from mindspore import nn, ops

    from conftest import tiny_batch
    from src.config import load_config
    from src.context import setup_context
    from src.deepspeech2 import CTCLossCell, build_network
    from src.train_step import TrainStep, build_optimizer
    from src.training import BadStepGuard, TrainingDiverged

    class PoisonedLoss(nn.Cell):
        def __init__(self, loss_net):
            super().__init__(auto_prefix=False)
            self.loss_net = loss_net

        def construct(self, x, lengths, targets, target_lengths, poison):
            return self.loss_net(x, lengths, targets, target_lengths) + ops.stop_gradient(poison)

    cfg = load_config(["--hidden_size=8", "--num_layers=1", "--distribute=true"])
    rank, _ = setup_context(cfg)
    ms.set_seed(0)  # the same initial weights on both ranks
    net = build_network(cfg)
    step = TrainStep(PoisonedLoss(CTCLossCell(net, 28)), build_optimizer(net, cfg, [1e-3] * 4))
    step.set_train(True)
    guard = BadStepGuard(2, logging.getLogger("guard"))
    seen, stopped = [], None
    for k in range(4):
        poison = np.inf if rank == 1 and k in (1, 2) else 0.0
        loss, ok, _ = step(*tiny_batch(ms, seed=10 * k + rank), ms.Tensor(poison, ms.float32))
        seen.append({"loss_finite": bool(np.isfinite(loss.asnumpy())), "ok": bool(ok.asnumpy())})
        try:
            guard.update(bool(ok.asnumpy()), k + 1, list)
        except TrainingDiverged:
            stopped = k + 1
            break
    weights = {p.name: p.asnumpy().tolist() for p in net.trainable_params()
               if p.name == "fc.module.weight"}
    with open(os.path.join(out, f"rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump({"steps": seen, "stopped_at": stopped, "weights": weights}, f)


if __name__ == "__main__":
    main(sys.argv[1])
