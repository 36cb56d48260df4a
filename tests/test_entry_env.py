"""The process environment is prepared before NumPy loads, and from what actually runs."""
import subprocess
import sys

from conftest import REPO

PROBE = """
import sys
sys.path.insert(0, {repo!r})
import src.cli
assert "numpy" not in sys.modules, "import src.cli loaded numpy"
seen = {{}}
def prepare(device, native_conv=True):
    seen.update(numpy="numpy" in sys.modules, native_conv=native_conv)
src.cli.prepare_environment = prepare
src.cli.main({entry!r}, "", lambda cfg: None, argv={argv!r})
print(seen["numpy"], seen["native_conv"])
"""


def probe(entry, argv):
    code = PROBE.format(repo=REPO, entry=entry, argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_importing_src_cli_and_loading_the_config_leave_numpy_unloaded():
    """OPENBLAS_CORETYPE only reaches NumPy if it is set before NumPy is imported (the
    augmentation and decoder checks import it: they run after prepare_environment)."""
    assert probe("train", ["--speed_perturb=true", "--epochs=2"])[0] == "False"
    assert probe("eval", ["--decode.method=beam"])[0] == "False"


def test_the_onednn_cap_follows_what_runs():
    """A MindIR holds MindSpore's own Conv2D: oneDNN must be capped (native_conv) for it,
    while a checkpoint on CPU runs the numpy convolutions and leaves oneDNN uncapped."""
    assert probe("transcribe", ["--mindir=model.mindir"])[1] == "True"
    assert probe("transcribe", ["--checkpoint=model.ckpt"])[1] == "False"
    assert probe("transcribe", ["--checkpoint=model.ckpt", "--stream"])[1] == "True"
    assert probe("export", ["--checkpoint=model.ckpt"])[1] == "True"
    assert probe("train", [])[1] == "False"
