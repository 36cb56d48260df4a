"""Entry-point plumbing shared by train.py, eval.py and export.py."""
import os
import sys
import tempfile

from src.config import load_config
from src.env import prepare_environment, uses_fast_conv
from src.errors import UserError


def check_output_dir(path, key):
    """Create `path` if needed and prove it writable (a file is made and removed), so that a
    bad output location fails before hours of work, not after. Raises UserError naming `key`."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(f"{key}: cannot write to {path}: {err.strerror or err}") from None
    return path


def main(entry, doc, run, argv=None):
    """Run `run(cfg)` for `entry` (train, eval, export or transcribe) as a command-line program.

    -h/--help prints `doc`. The config is loaded and checked and the environment prepared before
    mindspore is imported (by `run`). A UserError ends the process with one line on stderr and
    exit status 1; any other exception is a bug and keeps its traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    try:
        cfg = load_config(argv, entry=entry)
        prepare_environment(cfg.device_target, native_conv=not uses_fast_conv(cfg))
        return run(cfg) or 0
    except UserError as err:
        sys.exit(f"{entry}.py: error: {err}")


def tool_main(name, tool):
    """Run the main() of an argparse tool (data_prep, averaging): a UserError ends it with one
    line on stderr and exit status 1; other exceptions keep their traceback."""
    try:
        return tool()
    except UserError as err:
        sys.exit(f"{name}: error: {err}")
