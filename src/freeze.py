"""Fine-tuning only some layers: train.freeze names parameter prefixes that are not trained.

A frozen parameter gets requires_grad=False before the optimizer is built, so it has no
gradient, no update and no Adam moments; a BatchNorm cell whose parameters are all frozen uses
its moving statistics in training too (use_batch_statistics=False) and never updates them, as
in inference. Prefixes match whole name components: "RNN.lstms.1" covers
RNN.lstms.1.weight_ih_l0 but not RNN.lstms.10.*.
"""
from mindspore import nn

from src.errors import UserError


def _covered(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze(network, prefixes):
    """Freeze the parameters of `network` under `prefixes`; returns their names.

    Raises UserError naming a prefix that matches no parameter (with the valid first parts).
    """
    prefixes = [p.strip().rstrip(".") for p in prefixes if p.strip()]
    params = network.get_parameters()
    names = [p.name for p in network.get_parameters()]
    for prefix in prefixes:
        if not any(_covered(n, [prefix]) for n in names):
            heads = sorted({".".join(n.split(".")[:3]) for n in names})
            raise UserError(f"train.freeze: '{prefix}' matches no parameter (names start with "
                            f"{', '.join(heads)})")
    frozen = []
    for param in params:
        if _covered(param.name, prefixes):
            param.requires_grad = False
            frozen.append(param.name)
    for _, cell in network.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d) and _covered(cell.gamma.name, prefixes) \
                and _covered(cell.beta.name, prefixes):
            cell.use_batch_statistics = False
    return frozen
