"""Device switches (train.jit_level, train.amp_level) build and run as far as CPU allows."""
import numpy as np
import pytest


def _batch(ms, rng):
    x = ms.Tensor(rng.standard_normal((2, 1, 161, 40)).astype(np.float32))
    return (x, ms.Tensor(np.array([40, 31], np.int32)),
            ms.Tensor(np.array([[1, 2, 3], [4, 5, 0]], np.int32)),
            ms.Tensor(np.array([3, 2], np.int32)))


def _first_step(ms, overrides, fast_conv=True, device=None):
    """(loss, finite, train step) of one step of a tiny network; `device` forces that code path."""
    from src.builders import build_network
    from src.config import load_config
    from src.training import build_optimizer, build_train_step
    cfg = load_config(["--hidden_size=16", "--num_layers=1", "--loss_scale=none", *overrides])
    cfg.device_target = device or cfg.device_target
    ms.set_seed(3)
    net = build_network(cfg, fast_conv=fast_conv)
    step = build_train_step(net, build_optimizer(net, cfg, [1e-3] * 2), cfg, blank=28)
    step.set_train(True)
    loss, finite = step(*_batch(ms, np.random.default_rng(0)))
    return loss, bool(finite.asnumpy()), step


@pytest.mark.parametrize("level", ["O0", "O1"])
def test_jit_levels_compute_the_default_step(ms_context, level):
    want = float(_first_step(ms_context, [])[0].asnumpy())
    got, finite, _ = _first_step(ms_context, [f"--jit_level={level}"])
    assert finite and abs(float(got.asnumpy()) - want) < 1e-4 * abs(want)


def test_amp_o2_casts_the_network_and_keeps_the_loss_float32(ms_context):
    """What GPU/Ascend run under --amp_level=O2, built on CPU with the plain conv path.

    CPU training rejects amp (check_device_options); MindSpore's float16 CPU kernels still run it.
    """
    want = float(_first_step(ms_context, [], fast_conv=False)[0].asnumpy())
    loss, finite, step = _first_step(ms_context, ["--amp_level=O2"], fast_conv=False, device="GPU")
    assert loss.dtype == ms_context.float32 and finite
    # O2: the network computes in float16 with BatchNorm kept in float32 (wrapped), same names
    wrapped = [name for name, cell in step.network.cells_and_names()
               if type(cell).__name__ == "_OutputTo16"]
    assert any(name.endswith("conv.bn1") for name in wrapped)
    assert "conv.conv1.weight" in [p.name for p in step.network.trainable_params()]
    assert abs(float(loss.asnumpy()) - want) < 2e-2 * abs(want)
