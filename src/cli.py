"""Entry-point plumbing shared by train.py, eval.py and export.py."""
import errno
import os
import sys
import tempfile

from src.config import check_sections, keys_help, load_config
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
        reason = err.strerror or str(err)
        if os.path.isdir(path) and err.errno == errno.ENOENT:  # e.g. /proc: no files there
            reason = "files cannot be created in this folder"
        raise UserError(f"{key}: cannot write to {path}: {reason}") from None
    return path


def main(entry, doc, run, argv=None):
    """Run `run(cfg)` for `entry` (train, eval, export or transcribe) as a command-line program.

    -h/--help prints `doc` and every config key with its default. The config is loaded, the
    environment prepared, then the config's NumPy-based checks run, all before mindspore is
    imported (by `run`). A UserError ends the process with one line on stderr and exit status
    1; any other exception is a bug and keeps its traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"{doc}\n{keys_help()}")
        return 0
    try:
        cfg = load_config(argv, entry=entry, checks=False)
        prepare_environment(cfg.device_target, native_conv=not uses_fast_conv(cfg))
        check_sections(cfg)  # imports NumPy: after the environment is set
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
