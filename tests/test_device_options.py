"""Device switches (train.jit_level, train.amp_level) build and run as far as CPU allows."""
import pytest

from conftest import tiny_batch, tiny_step


def _first_step(ms, overrides, fast_conv=True, device=None):
    """(loss, finite, train step) of one step of a tiny network; `device` forces that code path."""
    device = [f"--device_target={device}"] if device else []
    ms.set_seed(3)
    _, _, step = tiny_step(["--loss_scale=none", *device, *overrides], fast_conv=fast_conv)
    loss, finite = step(*tiny_batch(ms))
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


def test_amp_o3_casts_everything_and_keeps_the_loss_float32(ms_context):
    """--amp_level=O3 (all cells in float16, output cast back) built and run on CPU through the
    GPU code path, like O2 above."""
    want = float(_first_step(ms_context, [], fast_conv=False)[0].asnumpy())
    loss, finite, step = _first_step(ms_context, ["--amp_level=O3"], fast_conv=False, device="GPU")
    assert loss.dtype == ms_context.float32 and finite
    kinds = {type(cell).__name__ for _, cell in step.network.cells_and_names()}
    assert "_OutputTo32" in kinds and "_OutputTo16" not in kinds  # nothing kept in float32
    assert "conv.conv1.weight" in [p.name for p in step.network.trainable_params()]
    assert loss.asnumpy() != want and abs(float(loss.asnumpy()) - want) < 2e-2 * abs(want)


def test_amp_o1_is_refused_with_the_reason():
    """O1 goes through mindspore.rewrite, which cannot rewrite MindSpore's LSTM kernel class;
    the refusal comes before any work, on every device."""
    from src.config import ConfigError, load_config
    for device in ("GPU", "Ascend"):
        with pytest.raises(ConfigError, match="amp_level=O1 does not build.*_DynamicRNNBase"):
            load_config([f"--device_target={device}", "--amp_level=O1"])
