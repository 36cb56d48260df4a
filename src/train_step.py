"""The training step: optimizer, loss, gradients, data-parallel mean, clipping, update."""
import mindspore as ms
from mindspore import nn

from src.deepspeech2 import CTCLossCell

INIT_LOSS_SCALE = 2.0 ** 16
# Names of the dynamic loss scale's state in the train step (and its checkpoints).
LOSS_SCALE_STATE = ("loss_scale", "loss_scale_counter")


def build_optimizer(network, cfg, lr):
    """Adam on the schedule `lr` (one value per step); weight decay skips BatchNorm and biases."""
    params = network.trainable_params()
    decay = [p for p in params if p.name.endswith("weight") or "weight_" in p.name]
    others = [p for p in params if not any(p is q for q in decay)]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay},
              {"params": others, "weight_decay": 0.0}]
    return nn.Adam(groups, learning_rate=ms.Tensor(lr), beta1=cfg.train.beta1,
                   beta2=cfg.train.beta2, eps=cfg.train.eps)


def make_loss_scaler(cfg):
    """ms.amp.DynamicLossScaler for train.loss_scale (dynamic, or auto off CPU), else None.

    Its state is named loss_scale / loss_scale_counter, so checkpoints keep it (resume exact).
    """
    mode = cfg.train.loss_scale
    if mode == "none" or (mode == "auto" and cfg.device_target == "CPU"):
        return None
    scaler = ms.amp.DynamicLossScaler(scale_value=INIT_LOSS_SCALE, scale_factor=2,
                                      scale_window=cfg.train.loss_scale_window)
    scaler.scale_value.name, scaler.counter.name = LOSS_SCALE_STATE
    return scaler


class Float16Cell(nn.Cell):
    """Runs `cell` in float16 and hands float32 on (its parameters keep their names)."""

    def __init__(self, cell):
        super().__init__(auto_prefix=False)
        self.cell = cell.to_float(ms.float16)

    def construct(self, x):
        return self.cell(x).astype(ms.float32)


def white_list_to_float16(network, white_list=(nn.Conv2d, nn.Dense)):
    """AMP level O1: the white-listed cells (MindSpore's O1 list: convolutions and Dense) in
    float16, everything else (BatchNorm, LSTMs, losses) in float32.

    MindSpore 2.10 implements O1 by rewriting the network's source (mindspore.rewrite), which
    fails on its own LSTM kernel class ("'_DynamicRNNBase' is not defined"); this wraps the
    cells in place instead, as its O2 does for the black list.
    """
    for _, cell in list(network.cells_and_names()):
        for name, child in list(cell.name_cells().items()):
            if isinstance(child, white_list):
                cell._cells[name] = Float16Cell(child)
    return network


def build_train_step(network, optimizer, cfg, blank):
    """The one TrainStep of every device, with dynamic loss scaling as configured.

    train.amp_level casts the network for mixed precision (GPU/Ascend; the loss stays float32)
    and train.jit_level sets the step's graph compile level; check_device_options has vetted both.
    """
    if cfg.train.amp_level == "O1":
        network = white_list_to_float16(network)
    elif cfg.train.amp_level != "O0":
        network = ms.amp.auto_mixed_precision(network, cfg.train.amp_level)
    step = TrainStep(CTCLossCell(network, blank), optimizer, cfg.train.max_grad_norm,
                     make_loss_scaler(cfg))
    if cfg.train.jit_level:
        step.set_jit_config(ms.JitConfig(jit_level=cfg.train.jit_level))
    return step


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

    Returns (loss, finite, gradient norm before clipping, as TensorBoard shows it): when the
    loss or any gradient is not finite the update is skipped,
    so one bad batch cannot poison the weights (the caller counts such steps). With a
    `loss_scaler` (ms.amp.DynamicLossScaler, functional, so the same code runs on CPU, GPU and
    Ascend) the gradients are computed for loss x scale and unscaled; a non-finite step halves
    the scale, `scale_window` finite steps in a row double it.

    Data-parallel: the decision is the same on every rank. The gradient norm is taken after the
    all-reduce, and the losses are summed across ranks for the check, so one rank's non-finite
    loss skips the step everywhere (ranks that disagreed would drift apart, and one stopping
    after max_bad_steps would leave the others hanging in the next all-reduce).
    """

    def __init__(self, loss_net, optimizer, max_grad_norm=0.0, loss_scaler=None):
        super().__init__(loss_net, optimizer)
        self.max_grad_norm = float(max_grad_norm)
        self.scaler = loss_scaler
        self.sum_over_ranks = ms.ops.AllReduce() if self.reducer_flag else None
        if loss_scaler is not None:  # registered here, so checkpoints hold the scale state
            self.loss_scale = loss_scaler.scale_value
            self.loss_scale_counter = loss_scaler.counter

    def construct(self, *inputs):
        loss, grads = self.loss_and_grads(1.0, *inputs)
        return self.update(loss, grads)

    def loss_and_grads(self, weight, *inputs):
        """(loss, gradients of weight x loss (x the loss scale, if any))."""
        loss = self.network(*inputs)
        if self.scaler is None:
            sens = ms.ops.fill(loss.dtype, loss.shape, self.sens) * weight
        else:
            sens = ms.ops.ones_like(loss) * self.scaler.scale_value.astype(loss.dtype) * weight
        return loss, self.grad(self.network, self.weights)(*inputs, sens)

    def update(self, loss, grads):
        """All-reduce, unscale, check, clip and apply `grads`; returns (loss, finite, the
        global gradient norm before clipping)."""
        grads = self.grad_reducer(grads)
        if self.scaler is not None:
            grads = self.scaler.unscale(grads)
        norm = global_norm(grads)
        checked = loss
        if self.reducer_flag:
            # after every gradient all-reduce (depend on the norm), so the collectives run in
            # the same order on every rank
            checked = ms.ops.depend(loss, norm).reshape((1,))
            checked = self.sum_over_ranks(checked)[0]  # non-finite if any rank's is
        finite = ms.ops.logical_and(ms.ops.isfinite(checked), ms.ops.isfinite(norm))
        if self.scaler is not None:
            self.scaler.adjust(finite)
        if finite:
            if self.max_grad_norm > 0:
                grads = clip_by_norm(grads, norm, self.max_grad_norm)
            loss = ms.ops.depend(loss, self.optimizer(grads))
        return loss, finite, norm


class _MicroGrads(nn.Cell):
    """The gradients of one micro-batch, weighted, without an update (TrainStep.loss_and_grads)."""

    def __init__(self, step):
        super().__init__(auto_prefix=False)  # keep the parameter names of the step's network
        self.step = step

    def construct(self, weight, *inputs):
        return self.step.loss_and_grads(weight, *inputs)


class _ApplyGrads(nn.Cell):
    """The update of TrainStep with given gradients (TrainStep.update)."""

    def __init__(self, step):
        super().__init__(auto_prefix=False)
        self.step = step

    def construct(self, loss, grads):
        return self.step.update(loss, grads)


class AccumulatingStep:
    """train.accumulate_steps: one optimizer step from several micro-batches.

        loss, finite, norm = AccumulatingStep(train_step)([batch_1, ..., batch_n])

    Micro-batch i (b_i utterances of B in all) contributes the gradients of b_i / B x its mean
    loss, so the sum equals the gradient of the mean loss over all B utterances: one batch of B
    (exactly so when BatchNorm uses fixed statistics; in training mode each micro-batch
    normalises with its own statistics and updates the moving ones, as in every framework). The
    sum is all-reduced, clipped and applied once (TrainStep.update), so the optimizer, its lr
    schedule and loss scaling count optimizer steps, and the peak memory is that of one
    micro-batch plus one copy of the gradients.
    """

    def __init__(self, train_step):
        self.train_step = train_step
        self.micro = _MicroGrads(train_step)
        self.apply = _ApplyGrads(train_step)
        self.micro.set_train(train_step.training)
        self.apply.set_train(train_step.training)

    def gradients(self, batches):
        """(mean loss over all utterances, summed weighted gradients) of `batches`, each a tuple
        (inputs (B_i, 1, F, T_i), input_lengths, targets, target_lengths)."""
        total = sum(b[0].shape[0] for b in batches)
        loss, summed = 0.0, None
        for batch in batches:
            weight = ms.Tensor(batch[0].shape[0] / total, ms.float32)
            part, grads = self.micro(weight, *batch)
            loss = loss + part * weight
            summed = grads if summed is None else tuple(a + g for a, g in zip(summed, grads))
        return loss, summed

    def __call__(self, batches):
        """One optimizer step from `batches`; returns (loss, finite, norm) as TrainStep does."""
        return self.apply(*self.gradients(batches))
