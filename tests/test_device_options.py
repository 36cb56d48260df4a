"""Device switches (train.jit_level, train.amp_level) build and run as far as CPU allows."""
import pytest

from conftest import tiny_batch, tiny_step


def _first_step(ms, overrides, fast_conv=True, device=None):
    """(loss, finite, train step) of one step of a tiny network; `device` forces that code path."""
    device = [f"--device_target={device}"] if device else []
    ms.set_seed(3)
    _, _, step = tiny_step([*device, *overrides], fast_conv=fast_conv)  # GPU: loss-scaled
    loss, finite, _ = step(*tiny_batch(ms))
    return loss, bool(finite.asnumpy()), step


@pytest.mark.parametrize("level", ["O0", "O1"])
def test_jit_levels_compute_the_default_step(ms_context, level):
    want = float(_first_step(ms_context, [])[0].asnumpy())
    got, finite, _ = _first_step(ms_context, [f"--jit_level={level}"])
    assert finite and abs(float(got.asnumpy()) - want) < 1e-4 * abs(want)


def _check_float16_step_with_loss_scaling(ms, step, loss, finite):
    """The first float16 steps at the initial scale 2**16 may overflow: each such step must halve
    the scale and skip the update, until a step is finite (the GPU/Ascend default path)."""
    from src.train_step import INIT_LOSS_SCALE
    scale, batch = INIT_LOSS_SCALE, tiny_batch(ms)
    for _ in range(12):
        assert loss.dtype == ms.float32
        if finite:
            break
        scale /= 2
        assert float(step.loss_scale.asnumpy()) == scale
        loss, ok, _ = step(*batch)
        finite = bool(ok.asnumpy())
    assert finite, "no finite float16 step within 12 halvings of the loss scale"


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_amp_casts_the_network_and_keeps_the_loss_float32(ms_context, level):
    """What GPU/Ascend run under --amp_level=O1/O2/O3 (with their default dynamic loss scaling),
    built on CPU with the plain conv path. CPU training rejects amp (check_device_options);
    MindSpore's float16 CPU kernels still run it. O1 puts the convs and the Dense in float16,
    O2 keeps BatchNorm in float32 (wrapped), O3 casts everything; parameter names stay the
    zoo's."""
    want = float(_first_step(ms_context, [], fast_conv=False)[0].asnumpy())
    loss, finite, step = _first_step(ms_context, [f"--amp_level={level}"], fast_conv=False,
                                     device="GPU")
    assert abs(float(loss.asnumpy()) - want) < 2e-2 * abs(want) and loss.asnumpy() != want
    _check_float16_step_with_loss_scaling(ms_context, step, loss, finite)
    kinds = {name: type(cell).__name__ for name, cell in step.network.cells_and_names()}
    wrapped = [name for name, kind in kinds.items() if kind == "_OutputTo16"]
    if level == "O1":
        half = sorted(name for name, kind in kinds.items() if kind == "Float16Cell")
        assert [n.rsplit(".", 1)[-1] for n in half] == ["conv1", "conv2", "module"]
        assert not wrapped and "_OutputTo32" not in kinds.values()
    elif level == "O2":
        assert any(name.endswith("conv.bn1") for name in wrapped)
    else:
        assert not wrapped and "_OutputTo32" in kinds.values()
    assert "conv.conv1.weight" in [p.name for p in step.network.trainable_params()]


def test_dynamic_loss_scaling_on_cpu_halves_skips_grows_and_equals_the_unscaled_step(ms_context):
    """The loss-scaled step GPU/Ascend run by default, run on CPU: an injected overflow halves the
    scale and skips the update, `loss_scale_window` finite steps double it, and the weights equal
    those of the unscaled step fed only the finite batches."""
    ms = ms_context
    import numpy as np
    lr = [1e-3] * 5
    _, net_a, plain = tiny_step(["--loss_scale=none"], lr=lr)
    _, net_b, scaled = tiny_step(["--loss_scale=dynamic", "--loss_scale_window=2"], lr=lr)
    ms.load_param_into_net(net_b, {p.name: ms.Parameter(p.asnumpy(), name=p.name)
                                   for p in net_a.get_parameters()})
    good = [tiny_batch(ms, seed=s) for s in range(4)]
    x, *rest = tiny_batch(ms, seed=9)
    broken = x.asnumpy()
    broken[0, 0, 3, 4] = np.inf
    bad = (ms.Tensor(broken), *rest)

    scales, finite = [], []
    for batch in (good[0], good[1], bad, good[2], good[3]):
        _, ok, _ = scaled(*batch)
        finite.append(bool(ok.asnumpy()))
        scales.append(float(scaled.loss_scale.asnumpy()))
    assert finite == [True, True, False, True, True]
    assert scales == [2.0 ** 16, 2.0 ** 17, 2.0 ** 16, 2.0 ** 16, 2.0 ** 17]
    for batch in good:
        assert bool(plain(*batch)[1].asnumpy())
    for p in net_a.trainable_params():
        q = next(q for q in net_b.trainable_params() if q.name == p.name)
        np.testing.assert_allclose(q.asnumpy(), p.asnumpy(), rtol=1e-6, atol=1e-7, err_msg=p.name)
