#!/usr/bin/python3
"""bench/report.py: turn bench/run's fio JSON outputs into the results table.

Run by bench/run with Debian's /usr/bin/python3.  Reads a manifest of
"job<TAB>system<TAB>rep<TAB>fio-json-path" lines; per (job, system) takes the
median over the repetitions of IOPS, MiB/s and mean latency (each metric's own
median), and the ratios of the median IOPS to nbdkit's, to the standalone
mirrord's (buffered) and to the qemu mirror's on the same job.  Reads the
facts bench/run recorded ("system.key<TAB>value": initial syncs, copy
comparisons, the resync run).  Prints the table, the issue's targets, and
writes OUT/results.txt and OUT/results.json.
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
STANDALONE = "mirrord-buffered"
QEMU = "qemu-mirror"
TARGET_RATIO = 1.0                         # standalone rows vs nbdkit
STANDALONE_ROWS = ("mirrord-buffered", "mirrord-direct")
REPL_ROWS = ("mirrord-sync", "mirrord-semi-sync", "mirrord-async", "mirrord-sync-direct")
VS_QEMU_ROWS = ("mirrord-sync", "mirrord-sync-direct")
PAIRS = REPL_ROWS
MIRRORS = (QEMU,) + REPL_ROWS
MIB = 1048576.0

SYSTEM_TEXT = {
    "nbdkit": "nbdkit file FILE, unix socket",
    "mirrord-buffered": "mirrord standalone primary, frontend=export, direct-io=no",
    "mirrord-direct": "mirrord standalone primary, frontend=export, direct-io=yes",
    "qemu-mirror": "qemu-storage-daemon: raw file node exported over NBD (unix socket), "
                   "blockdev-mirror sync=full copy-mode=write-blocking granularity=4096 "
                   "to nbdkit file over a unix socket; measured once the job is ready",
    "mirrord-sync": "mirrord primary with a peer on loopback, protocol=sync, direct-io=no",
    "mirrord-semi-sync": "mirrord primary with a peer on loopback, protocol=semi-sync, "
                         "direct-io=no",
    "mirrord-async": "mirrord primary with a peer on loopback, protocol=async, direct-io=no",
    "mirrord-sync-direct": "mirrord primary with a peer on loopback, protocol=sync, "
                           "direct-io=yes (both nodes)",
}


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
        "mib_s": side["bw_bytes"] / MIB,
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


def load_facts(path):
    """{system: {key: last value}}, and {system: {key: [every value]}}."""
    facts, every = {}, {}
    if not path:
        return facts, every
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        key, _, value = line.partition("\t")
        system, _, what = key.partition(".")
        facts.setdefault(system, {})[what] = value
        every.setdefault(system, {}).setdefault(what, []).append(value)
    return facts, every


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r, width=0):
    return f"{'-' if r is None else f'{r:.2f}x':>{width}}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runtime", type=int, required=True)
    ap.add_argument("--reps", type=int, required=True)
    ap.add_argument("--repl-reps", type=int, default=None)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--file-size", type=int, required=True)
    ap.add_argument("--bench-dir", required=True)
    ap.add_argument("--fstype", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--facts", default=None)
    ap.add_argument("--load-start", default="")
    ap.add_argument("--commit", default=None)
    ap.add_argument("--dirty", action="store_true")
    ap.add_argument("--bin-sha", default=None)
    a = ap.parse_args()
    systems = a.systems.split()
    repl_reps = a.repl_reps if a.repl_reps is not None else a.reps
    facts, every = load_facts(a.facts)

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

    def median_row(job, system):
        reps = runs.get((job, system))
        if not reps:
            return None
        return {
            "job": job,
            "system": system,
            "iops": statistics.median(r["iops"] for r in reps),
            "mib_s": statistics.median(r["mib_s"] for r in reps),
            "lat_mean_us": statistics.median(r["lat_mean_us"] for r in reps),
            "lat_p99_us": statistics.median(r["lat_p99_us"] for r in reps),
            "reps": reps,
        }

    def per_round(row, ref):
        # Each repetition against the reference's in the same round (taken
        # seconds apart), then the median: less sensitive to load that shifts
        # between rounds.  JSON only.
        if not row or not ref:
            return None
        by_rep = {r["rep"]: r["iops"] for r in ref["reps"]}
        rr = [r["iops"] / by_rep[r["rep"]] for r in row["reps"] if by_rep.get(r["rep"])]
        return statistics.median(rr) if rr else None

    rows, by = [], {}
    for job in jobs:
        base = median_row(job, BASELINE)
        sa = median_row(job, STANDALONE)
        qm = median_row(job, QEMU)
        for system in systems:
            row = median_row(job, system)
            if not row:
                continue
            row["ratio_iops"] = ratio(row["iops"], base and base["iops"])
            row["ratio_iops_median_of_rounds"] = per_round(row, base)
            row["ratio_vs_standalone"] = None
            row["ratio_vs_standalone_median_of_rounds"] = None
            row["lat_minus_standalone_us"] = None
            row["lat_minus_standalone_us_median_of_rounds"] = None
            if system in REPL_ROWS and sa:
                row["ratio_vs_standalone"] = ratio(row["iops"], sa["iops"])
                row["ratio_vs_standalone_median_of_rounds"] = per_round(row, sa)
                row["lat_minus_standalone_us"] = row["lat_mean_us"] - sa["lat_mean_us"]
                sa_lat = {r["rep"]: r["lat_mean_us"] for r in sa["reps"]}
                dd = [r["lat_mean_us"] - sa_lat[r["rep"]] for r in row["reps"]
                      if r["rep"] in sa_lat]
                row["lat_minus_standalone_us_median_of_rounds"] = (
                    statistics.median(dd) if dd else None)
            row["ratio_vs_qemu"] = None
            row["ratio_vs_qemu_median_of_rounds"] = None
            if system in VS_QEMU_ROWS and qm:
                row["ratio_vs_qemu"] = ratio(row["iops"], qm["iops"])
                row["ratio_vs_qemu_median_of_rounds"] = per_round(row, qm)
            # The standalone target (>= 1.0x nbdkit); other rows have none here.
            row["meets_target"] = None
            if system in STANDALONE_ROWS:
                row["meets_target"] = (row["ratio_iops"] is not None
                                       and row["ratio_iops"] >= TARGET_RATIO)
            row["targets"] = []
            # "JOB rep N: connection, ..." facts: the mirror was found not
            # mirroring right after that measurement.
            row["not_mirroring"] = [x for x in every.get(system, {}).get("lost", [])
                                    if x.split(" ", 1)[0] == job]
            rows.append(row)
            by[(job, system)] = row

    # ---- the targets ----
    targets = []

    def target(name, job, system, value, threshold, met, text, short):
        t = {"name": name, "job": job, "system": system, "value": value,
             "threshold": threshold, "met": met, "text": text}
        targets.append(t)
        if (job, system) in by:
            by[(job, system)]["targets"].append((short, met))

    for system in STANDALONE_ROWS:
        for job in jobs:
            r = by.get((job, system))
            if r:
                target(f"{system} {job} >= {TARGET_RATIO:.1f}x nbdkit", job, system,
                       r["ratio_iops"], TARGET_RATIO, r["meets_target"],
                       f"{system} {job}: IOPS {fmt_ratio(r['ratio_iops'])} nbdkit "
                       f"(target >= {TARGET_RATIO:.1f}x)", f">={TARGET_RATIO:.1f}x nbdkit")

    def ratio_target(system, ref_name, key, threshold, short):
        job = "randwrite-4k-qd32"
        r = by.get((job, system))
        v = r[key] if r else None
        met = None if v is None else v >= threshold
        target(f"{system} {job} IOPS >= {threshold}x {ref_name}", job, system, v, threshold,
               met, f"{system} {job}: IOPS {fmt_ratio(v)} {ref_name} "
               f"(target >= {threshold}x)", short)

    ratio_target("mirrord-sync", STANDALONE, "ratio_vs_standalone", 0.7, ">=0.7x sa")
    ratio_target("mirrord-sync", QEMU, "ratio_vs_qemu", 3.0, ">=3x qemu")
    ratio_target("mirrord-async", STANDALONE, "ratio_vs_standalone", 0.9, ">=0.9x sa")
    r = by.get(("randwrite-4k-qd1", "mirrord-sync"))
    d = r["lat_minus_standalone_us"] if r else None
    target("mirrord-sync randwrite-4k-qd1 mean latency <= standalone + 50 us",
           "randwrite-4k-qd1", "mirrord-sync", d, 50.0, None if d is None else d <= 50.0,
           "mirrord-sync randwrite-4k-qd1: mean latency "
           + ("-" if d is None else f"{d:+.1f} us") + " vs mirrord-buffered (target <= +50 us)",
           "lat <=sa+50us")
    rs = facts.get("resync", {})
    dirtied, wire = num(rs.get("dirtied_bytes")), num(rs.get("wire_bytes"))
    wr = ratio(wire, dirtied)
    target("resync bytes on the wire <= 1.05x bytes dirtied", None, "resync", wr, 1.05,
           None if wr is None else wr <= 1.05,
           f"resync: bytes on the wire (\"resync finished\" line) {fmt_ratio(wr)} "
           f"bytes dirtied (target <= 1.05x)", "")

    # ---- the table ----
    hdr = (f"{'job':<18} {'system':<19} {'IOPS':>9} {'MiB/s':>8} {'lat us':>8} "
           f"{'vs nbdkit':>9} {'vs standalone':>13} {'vs qemu':>7}  target")
    lines = [hdr, "-" * (len(hdr) + 22)]
    prev = None
    for r in rows:
        if prev is not None and r["job"] != prev:
            lines.append("")
        prev = r["job"]
        flags = "; ".join(f"{'ok' if met else ('MISS' if met is False else '?')} {short}"
                          for short, met in r["targets"])
        if r["not_mirroring"]:
            flags = (f"!! NOT MIRRORING after {len(r['not_mirroring'])} run(s)"
                     + (f"; {flags}" if flags else ""))
        lines.append(f"{r['job']:<18} {r['system']:<19} {r['iops']:>9.0f} {r['mib_s']:>8.1f} "
                     f"{r['lat_mean_us']:>8.1f} {fmt_ratio(r['ratio_iops'], 9)} "
                     f"{fmt_ratio(r['ratio_vs_standalone'], 13)} "
                     f"{fmt_ratio(r['ratio_vs_qemu'], 7)}  {flags}".rstrip())
    lines.append("")
    reps_text = (f"median of {a.reps}" if repl_reps == a.reps else
                 f"median of {a.reps} for nbdkit and standalone mirrord, of {repl_reps} "
                 f"for the mirrors (qemu-mirror, mirrord-sync...)")
    lines.append(f"fio nbd engine, {a.runtime} s time_based per run, {reps_text}; "
                 f"region {a.size} bytes of {a.file_size}-byte files on {a.fstype}; "
                 f"lat = mean total latency.")
    lines.append("vs nbdkit / vs standalone (mirrord-buffered) / vs qemu (qemu-mirror) = "
                 "IOPS ratio on the same job in the same run; sa = standalone.")
    load_end = " ".join("%.2f" % x for x in os.getloadavg())
    lines.append(f"NOISE: this machine is shared with tests running at the same time "
                 f"(load average {a.load_start or '?'} at the start, {load_end} at the end, "
                 f"{os.cpu_count()} CPUs): absolute numbers move a lot between runs; "
                 f"compare ratios.")

    # ---- initial syncs ----
    lines.append("")
    lines.append("Initial full sync (fresh sparse 1 GiB files; before the warm-up):")
    initial = {}
    for system in [s for s in systems if s in MIRRORS] + ["resync"]:
        f = facts.get(system, {})
        secs = num(f.get("initial_sync_s"))
        if secs is None:
            continue
        nbytes = num(f.get("initial_sync_bytes"))
        dsecs = num(f.get("initial_sync_daemon_s"))
        initial[system] = {"wall_s": secs, "bytes": nbytes, "daemon_s": dsecs,
                           "mib_s": (nbytes / MIB / secs) if nbytes and secs else None}
        if system == QEMU:
            lines.append(f"  {system:<19} ready after {secs:7.2f} s (blockdev-mirror to "
                         f"\"ready\"; qemu skips unallocated areas, so not comparable)")
        else:
            what = "(the resync run's pair)" if system == "resync" else ""
            lines.append(f"  {system:<19} {secs:7.2f} s promote to wait-sync, "
                         + ("-" if nbytes is None else f"{nbytes:.0f} bytes ")
                         + ("" if dsecs is None else f"in {dsecs:.1f} s (daemon), ")
                         + ("-" if not initial[system]["mib_s"] else
                            f"{initial[system]['mib_s']:.0f} MiB/s")
                         + (f" {what}" if what else ""))

    # ---- copies after the jobs ----
    lines.append("")
    lines.append("After the jobs: wait-sync (qemu: job completed), both ends stopped, "
                 "the two copies compared with cmp:")
    copies = {}
    for system in [s for s in systems if s in MIRRORS] + ["resync"]:
        f = facts.get(system, {})
        eq = f.get("copies_equal")
        if eq is None:
            continue
        copies[system] = {"equal": eq == "yes", "state": eq, "cmp": f.get("cmp"),
                          "final_wait_sync_s": num(f.get("final_wait_sync_s"))}
        ws = copies[system]["final_wait_sync_s"]
        text = {"yes": "equal",
                "not-in-sync": "!!! NOT IN SYNC after the jobs: not compared !!!"}.get(
                    eq, f"!!! DIFFER !!! {f.get('cmp', '')}")
        exits = [f"{n} exited {f[k]} on SIGTERM" for n, k in
                 (("alpha", "exit_alpha"), ("beta", "exit_beta")) if k in f]
        lines.append(f"  {system:<19} {text}"
                     + ("" if ws is None else f" (wait-sync took {ws:.2f} s)")
                     + ("; !!! " + ", ".join(exits) if exits else ""))

    # ---- mirrors that stopped mirroring during the jobs ----
    lost = {s: every[s]["lost"] for s in systems if "lost" in every.get(s, {})}
    if lost:
        lines.append("")
        lines.append("!!! Mirrors found NOT mirroring right after a measurement "
                     "(their rows are flagged; the run fails):")
        for system, events in lost.items():
            for e in events:
                lines.append(f"  {system:<19} after {e}")
            if "dropped" in facts.get(system, {}):
                lines.append(f"  {system:<19} not in sync 60 s later: measured no more "
                             f"after {facts[system]['dropped']}")

    # ---- resync ----
    resync = None
    if rs:
        secs, tcp = num(rs.get("time_s")), num(rs.get("tcp_bytes"))
        resync = {
            "blocks_written": num(rs.get("blocks_written")),
            "dirtied_bytes": dirtied,
            "wire_bytes": wire,
            "wire_over_dirtied": wr,
            "tcp_bytes": tcp,
            "tcp_over_dirtied": ratio(tcp, dirtied),
            "time_s": secs,
            "daemon_s": num(rs.get("daemon_s")),
            "mib_s": (wire / MIB / secs) if wire and secs else None,
            "copies_equal": copies.get("resync", {}).get("equal"),
        }
        lines.append("")
        nb = resync["blocks_written"]
        lines.append(f"Resync: 1 GiB pair (protocol sync) in sync, beta disconnected, "
                     f"{nb:.0f} random distinct 4 KiB blocks (1%) written, reconnected:"
                     if nb else "Resync:")
        lines.append(f"  bytes dirtied (out_of_sync_bytes before connect) "
                     + ("-" if dirtied is None else f"{dirtied:12.0f}"))
        lines.append(f"  bytes on the wire (\"resync finished\" line)      "
                     + ("-" if wire is None else f"{wire:12.0f}")
                     + f"  {fmt_ratio(wr)} dirtied (target <= 1.05x)")
        lines.append(f"  TCP payload beta received on the new link       "
                     + ("-" if tcp is None else f"{tcp:12.0f}")
                     + f"  {fmt_ratio(resync['tcp_over_dirtied'])} dirtied "
                     f"(with headers, handshake, bitmap exchange)")
        lines.append(f"  time from connect to wait-sync success          "
                     + ("-" if secs is None else f"{secs:10.2f} s")
                     + ("" if resync["daemon_s"] is None else
                        f"    (daemon: {resync['daemon_s']:.1f} s)")
                     + ("" if resync["mib_s"] is None else f", {resync['mib_s']:.1f} MiB/s"))

    # ---- targets ----
    lines.append("")
    lines.append("The issue's targets (noisy machine: a miss by a small margin may be noise):")
    for t in targets:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        lines.append(f"  [{mark}] {t['text']}")
    missed = [t for t in targets if t["met"] is False]
    lines.append(f"{len(missed)} target(s) missed" if missed else "every target is met")

    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)

    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "fio": cmd_out(["fio", "--version"]),
            "nbdkit": cmd_out(["nbdkit", "--version"]),
            "qemu_storage_daemon": cmd_out(["qemu-storage-daemon", "--version"]),
            "loadavg_start": a.load_start,
            "loadavg_end": load_end,
            "note": "shared machine: other tests ran at the same time",
        },
        # the tree when the run started (others may commit during it)
        "source": {"commit": a.commit, "dirty": a.dirty, "bin": a.bin,
                   "mirrord_sha256_16": a.bin_sha},
        "settings": {
            "runtime_s": a.runtime,
            "reps": a.reps,
            "reps_mirrors": repl_reps,
            "job_size_bytes": a.size,
            "file_size_bytes": a.file_size,
            "bench_dir": a.bench_dir,
            "fstype": a.fstype,
            "engine": "fio nbd (libnbd), one connection",
            "median": "per metric, over reps",
            "baseline": BASELINE,
            "standalone": STANDALONE,
            "target_ratio_iops": TARGET_RATIO,
        },
        "systems": {s: SYSTEM_TEXT.get(s, s) for s in systems},
        "results": [dict(r, targets=[{"target": s, "met": m} for s, m in r["targets"]])
                    for r in rows],
        "initial_sync": initial,
        "copies_after": copies,
        "resync": resync,
        "targets": targets,
        "all_meet_target": not missed,
        "all_copies_equal": all(c["equal"] for c in copies.values()),
        "not_mirroring": lost,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.txt"), "w") as f:
        f.write(table)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
