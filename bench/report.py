#!/usr/bin/python3
"""bench/report.py: turn bench/run's fio JSON outputs into the results table.

Run by bench/run with Debian's /usr/bin/python3.  Reads a manifest of
"job<TAB>system<TAB>rep<TAB>fio-json-path" lines; per (job, system) takes the
median over the repetitions of IOPS, MiB/s and mean latency (each metric's own
median), and the ratio of the median IOPS to nbdkit's median IOPS on the same
job.  Prints the table, writes OUT/results.txt and OUT/results.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

BASELINE = "nbdkit"
TARGET_RATIO = 1.0


def load_fio(path):
    text = open(path).read()
    # fio's nbd engine may print "fio: connected to NBD server" before the JSON.
    data = json.loads(text[text.index("{"):])
    job = data["jobs"][0]
    if job.get("error"):
        raise SystemExit(f"{path}: fio job error {job['error']}")
    rd, wr = job["read"], job["write"]
    side = wr if wr["io_bytes"] >= rd["io_bytes"] else rd
    return {
        "iops": side["iops"],
        "mib_s": side["bw_bytes"] / 1048576.0,
        "lat_mean_us": side["lat_ns"]["mean"] / 1000.0,
        "lat_p99_us": side["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000.0,
        "io_bytes": side["io_bytes"],
        "runtime_ms": side["runtime"],
    }


def cmd_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runtime", type=int, required=True)
    ap.add_argument("--reps", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--file-size", type=int, required=True)
    ap.add_argument("--bench-dir", required=True)
    ap.add_argument("--fstype", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--load-start", default="")
    ap.add_argument("--commit", default=None)
    ap.add_argument("--dirty", action="store_true")
    a = ap.parse_args()
    systems = a.systems.split()

    runs = {}     # (job, system) -> [metrics...]
    jobs = []
    for line in open(a.manifest):
        line = line.rstrip("\n")
        if not line:
            continue
        job, system, rep, path = line.split("\t")
        if job not in jobs:
            jobs.append(job)
        m = load_fio(path)
        m["rep"] = int(rep)
        m["fio_json"] = os.path.relpath(path, a.out)
        runs.setdefault((job, system), []).append(m)

    rows = []
    for job in jobs:
        base, base_reps = None, {}
        for system in systems:
            reps = runs.get((job, system))
            if not reps:
                continue
            row = {
                "job": job,
                "system": system,
                "iops": statistics.median(r["iops"] for r in reps),
                "mib_s": statistics.median(r["mib_s"] for r in reps),
                "lat_mean_us": statistics.median(r["lat_mean_us"] for r in reps),
                "lat_p99_us": statistics.median(r["lat_p99_us"] for r in reps),
                "reps": reps,
            }
            if system == BASELINE:
                base = row["iops"]
                base_reps = {r["rep"]: r["iops"] for r in reps}
            row["ratio_iops"] = (row["iops"] / base) if base else None
            # Each repetition against nbdkit's in the same round (taken seconds
            # apart), then the median: less sensitive to load that shifts
            # between rounds.  JSON only.
            rr = [r["iops"] / base_reps[r["rep"]] for r in reps
                  if base and base_reps.get(r["rep"])]
            row["ratio_iops_median_of_rounds"] = statistics.median(rr) if rr else None
            row["meets_target"] = (row["ratio_iops"] is not None
                                   and row["ratio_iops"] >= TARGET_RATIO)
            rows.append(row)

    hdr = f"{'job':<18} {'system':<17} {'IOPS':>9} {'MiB/s':>9} {'lat us':>9} {'vs nbdkit':>10}"
    lines = [hdr, "-" * len(hdr)]
    prev = None
    for r in rows:
        if prev is not None and r["job"] != prev:
            lines.append("")
        prev = r["job"]
        ratio = "-" if r["ratio_iops"] is None else f"{r['ratio_iops']:.2f}x"
        flag = "" if r["system"] == BASELINE or r["meets_target"] else "  < target"
        lines.append(f"{r['job']:<18} {r['system']:<17} {r['iops']:>9.0f} {r['mib_s']:>9.1f} "
                     f"{r['lat_mean_us']:>9.1f} {ratio:>10}{flag}")
    below = [r for r in rows if r["system"] != BASELINE and not r["meets_target"]]
    lines.append("")
    lines.append(f"fio nbd engine, {a.runtime} s time_based per run, median of {a.reps}, "
                 f"region {a.size} bytes of a {a.file_size}-byte file on {a.fstype}; "
                 f"lat = mean total latency; ratio = IOPS / nbdkit IOPS (target >= "
                 f"{TARGET_RATIO:.1f}x)")
    if below:
        lines.append(f"{len(below)} row(s) below target: " +
                     ", ".join(f"{r['job']}/{r['system']} {r['ratio_iops']:.2f}x" for r in below))
    else:
        lines.append("every mirrord row meets the target")
    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)

    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "fio": cmd_out(["fio", "--version"]),
            "nbdkit": cmd_out(["nbdkit", "--version"]),
            "loadavg_start": a.load_start,
            "loadavg_end": " ".join("%.2f" % x for x in os.getloadavg()),
        },
        # the tree when the run started (others may commit during it)
        "source": {"commit": a.commit, "dirty": a.dirty, "bin": a.bin},
        "settings": {
            "runtime_s": a.runtime,
            "reps": a.reps,
            "job_size_bytes": a.size,
            "file_size_bytes": a.file_size,
            "bench_dir": a.bench_dir,
            "fstype": a.fstype,
            "engine": "fio nbd (libnbd), one connection",
            "median": "per metric, over reps",
            "baseline": BASELINE,
            "target_ratio_iops": TARGET_RATIO,
        },
        "systems": {
            "nbdkit": "nbdkit file FILE, unix socket",
            "mirrord-buffered": "mirrord standalone primary, frontend=export, direct-io=no",
            "mirrord-direct": "mirrord standalone primary, frontend=export, direct-io=yes",
        },
        "results": rows,
        "all_meet_target": not below,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.txt"), "w") as f:
        f.write(table)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
