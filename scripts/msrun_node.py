"""msrun (MindSpore's launcher) run by the caller's Python, with the scheduler on node 0 only.

    python scripts/msrun_node.py --worker_num=N --local_worker_num=K [--node_rank=R] ... SCRIPT ...

msrun in MindSpore 2.10 starts the cluster's scheduler on every node whose own address equals
--master_addr. On several nodes of one host (a test, or containers sharing the host network)
every node would then try to bind the scheduler's port and all but one fail. Here the node with
--node_rank=0 (or no node rank: a single node) is the master, as the scripts document; the
others never start a scheduler.

msrun also starts every worker (and the scheduler) with a bare `python SCRIPT`, whatever
interpreter it runs in: where only python3 exists, or `python` is another environment, the
workers fail. Here they run this interpreter (sys.executable). Everything else is msrun's own
code and arguments.

The launcher's own framework log (its cluster client prints "[INFO] DISTRIBUTED ..." lines to
the console) is set to errors only, as the workers set theirs (src/env.py); a user's GLOG_v wins.
"""
import os
import sys


def main(argv):
    os.environ.setdefault("GLOG_v", "3")  # before mindspore is imported
    from mindspore.parallel.cluster import run
    from mindspore.parallel.cluster.process_entity import _api, _utils
    ranks = [a.split("=", 1)[1] for a in argv if a.startswith("--node_rank=")]
    if ranks and int(ranks[0]) > 0:
        _api._is_local_ip = lambda _address: False  # not the master, whatever its address
    _utils._generate_cmd_args_list = lambda cmd, cmd_args: [sys.executable, cmd, *cmd_args]
    sys.argv = ["msrun", *argv]
    run.main()


if __name__ == "__main__":
    main(sys.argv[1:])
