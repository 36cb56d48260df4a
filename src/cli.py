"""Entry-point plumbing shared by train.py, eval.py and export.py."""
import sys

from src.config import ConfigError, load_config
from src.env import prepare_environment


def start(entry, argv=None):
    """Parse the config for `entry` and prepare the environment before mindspore is imported.

    Wrong input ends the process with one line on stderr and exit status 2.
    """
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        return None
    try:
        cfg = load_config(argv, entry=entry)
        # export always builds the plain network (nn.Conv2d); train/eval may use the fast path.
        prepare_environment(cfg.device_target,
                            native_conv=entry == "export" or not cfg.model.cpu_fast_conv)
    except (ConfigError, ValueError) as err:
        sys.exit(f"{entry}.py: error: {err}")
    return cfg


def fail(entry, err):
    """Report an expected error (bad data, checkpoint, ...) as one line and exit 1."""
    sys.exit(f"{entry}.py: error: {err}")
