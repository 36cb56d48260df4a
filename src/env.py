"""Process environment that must be set before `import mindspore` (this module never imports it)."""
import os

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")


def prepare_environment(device_target):
    """Set framework environment variables for `device_target`; call before importing mindspore.

    On CPU, oneDNN's AVX-512 convolution path runs ~100x slower than its AVX2 GEMM path on the
    CPUs we measured, so oneDNN is capped at AVX2 unless the user chose otherwise. GLOG_v=3
    silences per-step framework warnings (user settings win).
    """
    if device_target not in DEVICE_TARGETS:
        raise ValueError(f"device_target must be one of {', '.join(DEVICE_TARGETS)}, "
                         f"got '{device_target}'")
    if device_target == "CPU":
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    os.environ.setdefault("GLOG_v", "3")
