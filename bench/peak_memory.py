"""Peak memory of a command and its process tree (loader workers included). Prints figures; asserts nothing.

    python bench/peak_memory.py -- python main.py backbone=mobilefacenet trainer.max_epochs=1 \\
        trainer.limit_train_batches=3

Samples every `--interval` seconds: the machine's used memory (MemTotal - MemAvailable) over its value at start, and
the proportional set size (PSS: shared pages split between the processes sharing them) of every process in the tree.
At the sample with the highest used memory it prints the process count and each process's PSS (docs/performance.md,
"Memory of the loader workers").
"""

import argparse
import os
import subprocess
import sys
import time


def pss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1e6
    except OSError:  # the process ended between listing and reading
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    found += process_tree(int(child))
    except OSError:
        pass
    return found


def used_gb() -> float:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":")
            info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--log", default=os.devnull, help="where the command's output goes")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to measure after --")
    base = used_gb()
    start = time.perf_counter()
    with open(args.log, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        peak_used, peak_tree = 0.0, []
        while proc.poll() is None:
            tree = [(pid, pss_gb(pid)) for pid in process_tree(proc.pid)]
            used = used_gb() - base
            if used > peak_used:
                peak_used, peak_tree = used, tree
            time.sleep(args.interval)
    print(f"exit {proc.returncode}, {time.perf_counter() - start:.0f} s")
    print(f"peak used memory: +{peak_used:.2f} GB over the start; at that moment {len(peak_tree)} processes, "
          f"PSS {sum(v for _, v in peak_tree):.2f} GB in all: " + ", ".join(f"{v:.2f}" for _, v in peak_tree))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
