"""The training step: optimizer, loss, gradients, data-parallel mean, clipping, update."""
import mindspore as ms
from mindspore import nn

from src.deepspeech2 import CTCLossCell


def build_optimizer(network, cfg, lr):
    """Adam on the schedule `lr` (one value per step); weight decay skips BatchNorm and biases."""
    params = network.trainable_params()
    decay = [p for p in params if p.name.endswith("weight") or "weight_" in p.name]
    others = [p for p in params if not any(p is q for q in decay)]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay},
              {"params": others, "weight_decay": 0.0}]
    return nn.Adam(groups, learning_rate=ms.Tensor(lr), beta1=cfg.train.beta1,
                   beta2=cfg.train.beta2, eps=cfg.train.eps)


def build_train_step(network, optimizer, cfg, blank):
    """TrainStep (CPU, or loss_scale none), else ScaledTrainStep with dynamic loss scaling.

    train.amp_level casts the network for mixed precision (GPU/Ascend; the loss stays float32)
    and train.jit_level sets the step's graph compile level; check_device_options has vetted both.
    """
    if cfg.train.amp_level != "O0":
        network = ms.amp.auto_mixed_precision(network, cfg.train.amp_level)
    loss_net = CTCLossCell(network, blank)
    if cfg.device_target != "CPU" and cfg.train.loss_scale == "dynamic":
        step = ScaledTrainStep(loss_net, optimizer, cfg.train.max_grad_norm)
    else:
        step = TrainStep(loss_net, optimizer, cfg.train.max_grad_norm)
    if cfg.train.jit_level:
        step.set_jit_config(ms.JitConfig(jit_level=cfg.train.jit_level))
    return step


_unscale = ms.ops.MultitypeFuncGraph("unscale")


@_unscale.register("Tensor", "Tensor")
def _unscale_grad(scale, grad):
    return grad * ms.ops.reciprocal(scale).astype(grad.dtype)


def global_norm(grads):
    """sqrt(sum of squares) of all gradients; inf or nan when any gradient is not finite.

    One fused L2Loss reduction per tensor. Deciding finiteness from this one number replaces an
    isfinite(...).all() pass over every gradient: at the zoo size (86.6 M parameters) on CPU,
    those passes plus ops.clip_by_global_norm took ~1.3 s per step, this and the clip ~0.2 s.
    (A gradient so large that its squares overflow float32, > 1.8e19, also counts as non-finite.)
    """
    return ms.ops.sqrt(2 * ms.ops.addn([ms.ops.L2Loss()(g) for g in grads]))


def clip_by_norm(grads, norm, max_norm):
    """grads * max_norm / max(norm, max_norm): ops.clip_by_global_norm's rule, norm given."""
    scale = max_norm / ms.ops.maximum(norm, max_norm)
    return tuple(g * scale.astype(g.dtype) for g in grads)


class TrainStep(nn.TrainOneStepCell):
    """One training step: loss, gradients, (data-parallel mean), global-norm clip, update.

    Returns (loss, finite): when the loss or any gradient is not finite the update is skipped,
    so one bad batch cannot poison the weights (the caller counts such steps).
    """

    def __init__(self, loss_net, optimizer, max_grad_norm=0.0):
        super().__init__(loss_net, optimizer)
        self.max_grad_norm = float(max_grad_norm)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        sens = ms.ops.fill(loss.dtype, loss.shape, self.sens)
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.grad_reducer(grads)
        norm = global_norm(grads)
        finite = ms.ops.logical_and(ms.ops.isfinite(loss), ms.ops.isfinite(norm))
        if finite:
            if self.max_grad_norm > 0:
                grads = clip_by_norm(grads, norm, self.max_grad_norm)
            loss = ms.ops.depend(loss, self.optimizer(grads))
        return loss, finite


class ScaledTrainStep(nn.TrainOneStepWithLossScaleCell):
    """TrainStep with dynamic loss scaling (GPU/Ascend: needs device overflow detection).

    Returns (loss, finite, scale) like TrainStep: an overflowing step skips the update and lowers
    the scale, as MindSpore's DynamicLossScaleUpdateCell does.
    """

    def __init__(self, loss_net, optimizer, max_grad_norm=0.0, init_scale=2.0 ** 16):
        manager = nn.DynamicLossScaleUpdateCell(loss_scale_value=init_scale, scale_factor=2,
                                                scale_window=1000)
        super().__init__(loss_net, optimizer, scale_sense=manager)
        self.max_grad_norm = float(max_grad_norm)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        scale = self.scale_sense
        status, scale = self.start_overflow_check(loss, scale)
        sens = ms.ops.ones_like(loss) * scale.astype(loss.dtype)
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.hyper_map(ms.ops.partial(_unscale, scale), grads)
        grads = self.grad_reducer(grads)
        overflow = self.process_loss_scale(self.get_overflow_status(status, grads))
        if not overflow:
            if self.max_grad_norm > 0:
                grads = clip_by_norm(grads, global_norm(grads), self.max_grad_norm)
            loss = ms.ops.depend(loss, self.optimizer(grads))
        return loss, ms.ops.logical_not(overflow), scale
