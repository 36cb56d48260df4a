"""A training run owns its folders: a lock, a record of its checkpoints, no mixing of runs.

    folder = RunFolder.claim(cfg)      # rank 0, before any work; refuses with one line
    folder.add(path)                   # after each checkpoint save
    folder.stale(keep_max)             # this run's checkpoints beyond the newest keep_max

<checkpoint_dir>/run.json records the run (id, start time, its metrics.jsonl) and the
checkpoints it wrote, so
rotation and --resume=auto only ever touch this run's files. A new run (no --resume) refuses
folders that already hold another run's checkpoints or metrics, naming how to continue that run
or where to write instead; --resume=auto continues the recorded run (a folder of checkpoints
from before run.json existed is adopted as that run). A lock file in each folder refuses a
second run at the same time; the operating system releases it when the process ends, however
it ends (kill -9 included).
"""
import fcntl
import glob
import json
import os
import time

from src.errors import UserError

RECORD = "run.json"
LOCK = ".train.lock"
METRICS = "metrics.jsonl"


class RunFolderError(UserError):
    """A folder that holds another run, or is in use by one."""


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json_atomic(path, data):
    """Write `data` as JSON to `path` through a temporary file and a rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def lock_folder(folder):
    """Hold an exclusive lock on folder/.train.lock for the life of the process (the returned
    file must stay open); RunFolderError naming the holder's PID when another run has it."""
    path = os.path.join(folder, LOCK)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise RunFolderError(f"{folder} is in use by another training run (PID {holder}): wait "
                             "for it to end, or give this run its own --checkpoint_dir and "
                             "--log_dir") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def run_content(ckpt_dir, log_dir):
    """Names of the work a run left in the folders: checkpoints and non-empty metrics. (A
    run.json alone, of a run that stopped before its first checkpoint and metrics line, does
    not count: a start that failed, e.g. on a bad manifest, must not block the next one.)"""
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ckpt_dir, "DeepSpeech*.ckpt")))
    metrics = os.path.join(log_dir, METRICS)
    if os.path.isfile(metrics) and os.path.getsize(metrics) > 0:
        found.append(metrics)
    return found


class RunFolder:
    """The current run's record in its checkpoint folder (see the module docstring)."""

    def __init__(self, ckpt_dir, record, locks=()):
        self.dir, self.record, self._locks = ckpt_dir, record, list(locks)

    @classmethod
    def claim(cls, ckpt_dir, log_dir, continuing, legacy_checkpoints=()):
        """Lock both folders and take or continue the run recorded in ckpt_dir.

        `continuing`: the run resumes from ckpt_dir's own checkpoints (--resume=auto, or a
        checkpoint inside it); otherwise it is a new run, refused where another run's files
        are. `legacy_checkpoints`: full checkpoints found in ckpt_dir (oldest first), adopted
        when continuing in a folder that has no run record yet.
        """
        os.makedirs(ckpt_dir, exist_ok=True)
        os.makedirs(log_dir, exist_ok=True)
        folders = sorted({os.path.realpath(ckpt_dir), os.path.realpath(log_dir)})
        locks = [lock_folder(folder) for folder in folders]
        record = _read_json(os.path.join(ckpt_dir, RECORD))
        if not continuing:
            cls._refuse_other_run(ckpt_dir, log_dir)
        if record is None or not continuing:
            record = {"run_id": f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "checkpoints": [os.path.basename(p) for p in legacy_checkpoints]}
        record["metrics"] = os.path.join(os.path.abspath(log_dir), METRICS)
        folder = cls(ckpt_dir, record, locks)
        folder.save()
        return folder

    @staticmethod
    def _refuse_other_run(ckpt_dir, log_dir):
        found = run_content(ckpt_dir, log_dir)
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            raise RunFolderError(
                f"{ckpt_dir} (or {log_dir}) already holds another run ({shown}): continue it "
                "with --resume=auto, or give this run its own folders, e.g. "
                "--checkpoint_dir=outputs/run2/checkpoints --log_dir=outputs/run2/train")

    @classmethod
    def read(cls, ckpt_dir):
        """The recorded run of ckpt_dir without locking (ranks > 0, --resume=auto), or None."""
        record = _read_json(os.path.join(ckpt_dir, RECORD))
        return cls(ckpt_dir, record) if record else None

    @property
    def checkpoints(self):
        """This run's full checkpoints, oldest first (absolute paths)."""
        return [os.path.join(self.dir, name) for name in self.record["checkpoints"]]

    def save(self):
        write_json_atomic(os.path.join(self.dir, RECORD), self.record)

    def add(self, path):
        """Record a checkpoint this run wrote (written again after a resume: kept once, last)."""
        name = os.path.basename(path)
        names = [n for n in self.record["checkpoints"] if n != name]
        self.record["checkpoints"] = names + [name]
        self.save()

    def stale(self, keep_max):
        """This run's checkpoints to remove for keep_max (0 = keep all), dropped from the record."""
        if keep_max <= 0 or len(self.record["checkpoints"]) <= keep_max:
            return []
        old = self.record["checkpoints"][:-keep_max]
        self.record["checkpoints"] = self.record["checkpoints"][-keep_max:]
        self.save()
        return [os.path.join(self.dir, name) for name in old]
