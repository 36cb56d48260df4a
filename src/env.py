"""Process environment that must be set before `import mindspore` (this module never imports it)."""
import os


def prepare_environment(device_target, native_conv=True):
    """Set framework environment variables for `device_target`; call before importing mindspore.

    On CPU, OpenBLAS (numpy) is told the CPU's kernel family. When MindSpore's own Conv2D will run
    on CPU (native_conv: the plain network, export), oneDNN is capped at AVX2: on AVX-512 CPUs its
    NCHW convolution otherwise falls back to a reference kernel ~100x slower. The cap costs the
    LSTMs ~1.4x (measured: biLSTM 1024 fwd+bwd 3.5 s vs 2.4 s), so runs that compute the
    convolutions with the numpy fast path (native_conv=False) leave oneDNN uncapped. User settings
    win. Call it before numpy is imported too. GLOG_v=3 silences per-step framework warnings.
    """
    if device_target == "CPU":
        if native_conv:
            os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
        core = openblas_coretype()
        if core:
            os.environ.setdefault("OPENBLAS_CORETYPE", core)
    os.environ.setdefault("GLOG_v", "3")


def uses_fast_conv(cfg):
    """Whether the network computes its convolutions with the CPU numpy path (src/fast_conv.py).

    Only on CPU and only when cfg.model.cpu_fast_conv, and only where a network is built from
    a checkpoint: never for export, whose graph must hold MindSpore's own Conv2D (the numpy
    path is a host callback that cannot be serialised), nor where an exported MindIR runs
    (transcribe.mindir), whose graph holds that Conv2D too, nor where transcribe streams
    (transcribe.stream or .microphone, and serve.py: src/streaming.py's step runs the network's
    weights through its own Conv2D). False means MindSpore's Conv2D runs, so prepare_environment caps
    oneDNN (an uncapped MindIR ran ~30x slower on AVX-512).
    """
    t = cfg.transcribe if cfg.entry == "transcribe" else None
    native = cfg.entry == "serve" or (t is not None and bool(t.mindir or t.stream or
                                                              t.microphone))
    return (cfg.model.cpu_fast_conv and cfg.device_target == "CPU" and cfg.entry != "export"
            and not native)


def openblas_coretype(cpuinfo="/proc/cpuinfo"):
    """OpenBLAS kernel family for this CPU, or None to let OpenBLAS decide.

    The OpenBLAS bundled with NumPy 1.26 (which MindSpore 2.10 needs) does not recognise recent
    Xeons and falls back to slow kernels: float32 GEMM measured 37 GFLOP/s instead of 167 with
    the AVX-512 (SkylakeX) kernels on the same CPU. The CPU fast conv path depends on it.
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return "SkylakeX"
    if {"avx2", "fma"} <= set(flags):
        return "Haswell"
    return None


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name, quoted with every benchmark figure."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown"
