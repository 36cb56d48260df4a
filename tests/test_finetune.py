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
