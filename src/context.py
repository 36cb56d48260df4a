"""The MindSpore context of a run: mode, device, seed, and the data-parallel group."""
import mindspore as ms

from src.errors import UserError


class DeviceError(UserError):
    """The configured device cannot run here."""


def device_problem(device_target):
    """None when MindSpore can run on `device_target` here, else the reason in one line.

    ms.device_context.<device>.is_available() (MindSpore >= 2.6; ms.hal.is_available is
    deprecated) logs MindSpore's own reason as a warning, which GLOG_v=3 hides; the reason is
    read from the plugin loader instead and put into the message.
    """
    if getattr(ms.device_context, device_target.lower()).is_available():
        return None
    from mindspore._c_expression import MSContext
    loader = MSContext.get_instance().load_plugin_error().splitlines()
    related = [line for line in loader if device_target.lower() in line.lower()]
    said = f"; MindSpore's plugin loader: {' | '.join(related)}" if related else ""
    return (f"device_target {device_target} is not available on this machine{said} (check the "
            "drivers and the CUDA/CANN versions in docs/troubleshooting.md#environment-requirements, or use "
            "--device_target CPU)")


def setup_context(cfg):
    """Graph/PyNative mode and device from the config; with cfg.distribute, join the workers.

    Returns (rank, group_size).
    """
    problem = device_problem(cfg.device_target)
    if problem:
        raise DeviceError(problem)
    ms.set_context(mode={"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}[cfg.mode])
    ms.set_seed(cfg.seed)
    if not cfg.distribute:
        ms.set_device(cfg.device_target, cfg.device_id)
        return 0, 1
    # msrun/mpirun assign the device per worker; init() picks mccl (CPU), nccl (GPU), hccl (Ascend).
    from mindspore.communication import get_group_size, get_rank, init
    ms.set_device(cfg.device_target)
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True)
    return get_rank(), get_group_size()


if __name__ == "__main__":  # scripts/launch.sh: check the device before starting workers
    import sys
    found = device_problem(sys.argv[1])
    sys.exit(f"error: {found}" if found else 0)
