#!/usr/bin/env python3
"""e2e-analyze.py: the figures of bench-e2e.sh's runs (issue 6).

usage: e2e-analyze.py --one RUNDIR            one line for one run
       e2e-analyze.py [--plots DIR] OUTDIR    tables (markdown), verdicts,
                                              plots (gnuplot PNG)

Definitions (the same for every policy and workload):

- client read latency: per read request, from the client's issue to its
  completion.  fio and the trace replayer measure it in the client (fio's
  lat log: submission + completion latency); for the fs-* workloads the
  client is the kernel (ext4 -> loop -> nbdfuse), and the latency is
  measured by nbdkit's log filter at the top of the filter's nbdkit, from
  the request's arrival to its reply.
- reference latency (L_ref): the median read latency of the same workload
  replayed once more, in the same repetition, after the volume is synced
  (every read served by the shadow, no origin involved).
- stall time: sum over the client's reads of max(0, latency - L_ref): the
  time clients spent waiting beyond what a shadow read costs -- waits for
  the origin and any queueing behind copies.
- shadow share: bytes of client reads served by the shadow / all bytes of
  client reads, as the filter counts them (status: client_reads) over the
  whole run, from start to the end of the workload's run.
- completion: from the filter's start to the first status poll (every
  0.25 s) whose phase is "synced" (background on).
"""

import datetime
import glob
import json
import math
import os
import re
import statistics
import subprocess
import sys

POLICIES = ["off", "nbdkit-ra", "readahead", "ngram", "lstm", "hybrid"]
WORKLOADS = ["seq", "inter", "zipf", "wsrch", "tpcc", "fs-tar", "fs-find"]
LEARNABLE = {"seq", "inter", "wsrch", "fs-tar", "fs-find"}
RANDOM = {"zipf", "tpcc"}
DESCR = {
    "seq": "fio: one sequential reader, 64 KiB reads, 300/s, from 55% of the volume",
    "inter": "fio: 4 sequential readers at once (from 50/62/74/86%), 64 KiB, 100/s each",
    "zipf": "fio: random 4 KiB reads, zipf:1.2, queue depth 4, 400/s",
    "wsrch": "replay of wsrch-small.trace device 0 (busiest), 2x speed",
    "tpcc": "replay of tpcc-small.trace, all 16 devices (reads and writes), slowed down",
    "fs-tar": "ext4 via nbdfuse + loop: extract a tarball (tar -xO)",
    "fs-find": "ext4 via nbdfuse + loop: find over a source tree + md5sum of every file",
}
LABEL = {"nbdkit-ra": "nbdkit readahead filter"}

LOG_RE = re.compile(r"^(\S+ \S+) connection=(\d+) (\.\.\.)?Read id=(\d+)(.*)$")


def read_window(d):
    with open(os.path.join(d, "window")) as f:
        a, b = f.read().split()
    return float(a), float(b)


def parse_nbdkit_log(path, t0):
    """Reads from the log filter: [(start_unix_s, latency_s)]."""
    start = {}
    out = []
    shift = None
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_RE.match(line)
            if not m:
                continue
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
            t = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
            if shift is None:
                # The log filter writes local time: align to t0 by whole
                # quarter hours.
                shift = round((t0 - t) / 900) * 900
            t += shift
            key = (m.group(2), m.group(4))
            if m.group(3):
                if key in start:
                    out.append((start[key], t - start[key]))
                    del start[key]
            else:
                start[key] = t
    return out


def read_latencies(d, t0=None, nbdkit_log=None):
    """Client reads of one workload run: [(start_unix_s, latency_s)]."""
    lat = []
    if nbdkit_log:
        a, b = read_window(d)
        return [x for x in parse_nbdkit_log(nbdkit_log, t0) if a <= x[0] <= b]
    for path in glob.glob(os.path.join(d, "fio_lat.*.log")) + \
            glob.glob(os.path.join(d, "lat.*.log")):
        with open(path) as f:
            for line in f:
                p = line.split(",")
                if len(p) < 4 or p[2].strip() != "0":
                    continue
                lat.append((int(p[0]) / 1000.0, int(p[1]) / 1e9))
    lat.sort()
    return lat


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(math.ceil(q * len(xs))) - 1))
    return xs[k]


def read_status(rd):
    pts = []
    with open(os.path.join(rd, "status.log")) as f:
        for line in f:
            t, _, js = line.partition(" ")
            try:
                pts.append((float(t), json.loads(js)))
            except ValueError:
                continue
    return pts


def run_figures(rd):
    with open(os.path.join(rd, "t0")) as f:
        t0s, synced = f.read().split()
    t0 = float(t0s)
    log = os.path.join(rd, "nbdkit-log.txt")
    log = log if os.path.exists(log) else None
    main = read_latencies(os.path.join(rd, "main"), t0, log)
    lats = [l for _, l in main]
    with open(os.path.join(rd, "final.json")) as f:
        final = json.load(f)
    cr = final["client_reads"]
    tot = cr["bytes_shadow"] + cr["bytes_origin"]
    completion = None
    status = read_status(rd)
    for t, js in status:
        if js.get("phase") == "synced":
            completion = t - t0
            break
    # The workload's end may come after the sync: then the status poll
    # lagging behind, wait_synced's own time (polled every 0.1 s) counts.
    p = os.path.join(rd, "synced_at")
    if synced == "1" and os.path.exists(p) and open(p).read().strip():
        t = float(open(p).read()) - t0
        completion = t if completion is None else min(completion, t)
    a, b = read_window(os.path.join(rd, "main"))
    # Share of the workload's status polls with the copier's window at 1
    # (backing off fully for clients: prefetch and sweep one at a time).
    polls = [js for t, js in status if a <= t <= b]
    win1 = sum(1 for js in polls if js["copier"]["window"] <= 1) / len(polls) if polls else float("nan")
    fig = {
        "rd": rd, "t0": t0, "reads": len(lats),
        "p50": pct(lats, 0.5), "p99": pct(lats, 0.99),
        "mean": statistics.fmean(lats) if lats else float("nan"),
        "share": cr["bytes_shadow"] / tot if tot else float("nan"),
        "completion": completion, "wall": b - a,
        "issued": final["prefetch"]["issued"],
        "pf_copied": final["prefetch"]["copied"],
        "pf_used": final["prefetch"]["used"],
        "pf_wasted": final["prefetch"]["wasted"],
        "bytes": final["bytes_copied"],
        "lat": main, "win1": win1,
    }
    for k in ("load_start", "load_end"):
        p = os.path.join(rd, k)
        fig[k] = open(p).read().strip() if os.path.exists(p) else "?"
    refdir = os.path.join(rd, "ref")
    if os.path.isdir(refdir):
        ref = [l for _, l in read_latencies(refdir, t0, log)]
        fig["ref_p50"] = pct(ref, 0.5)
        fig["ref_p99"] = pct(ref, 0.99)
        fig["ref_reads"] = len(ref)
    return fig


def stall(fig, ref_p50):
    return sum(max(0.0, l - ref_p50) for _, l in fig["lat"])


def fmt_ms(s):
    return "-" if s is None or math.isnan(s) else "%.2f" % (s * 1000)


def fmt_s(s, d=1):
    return "not synced" if s is None else ("-" if math.isnan(s) else "%.*f" % (d, s))


def one(rd):
    f = run_figures(rd)
    s = "reads %d p50 %s ms p99 %s ms shadow %.1f%% completion %s s wall %.1f s" % (
        f["reads"], fmt_ms(f["p50"]), fmt_ms(f["p99"]), 100 * f["share"],
        fmt_s(f["completion"]), f["wall"])
    if "ref_p50" in f:
        s += " | ref p50 %s ms, stall %.2f s" % (fmt_ms(f["ref_p50"]), stall(f, f["ref_p50"]))
    s += " | prefetch issued %d used %d wasted %d | window 1 %.0f%% | load %s" % (
        f["issued"], f["pf_used"], f["pf_wasted"], 100 * f["win1"], f["load_start"])
    print(s)


def med(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def plot(workload, figs, plots):
    """figs: {policy: fig} of one repetition."""
    tmp = os.path.join(plots, ".data")
    os.makedirs(tmp, exist_ok=True)
    lat_files, res_files = [], []
    for policy in POLICIES:
        f = figs.get(policy)
        if f is None:
            continue
        # Mean read latency per 0.5 s bin since the filter's start.
        bins = {}
        for t, l in f["lat"]:
            b = int((t - f["t0"]) / 0.5)
            bins.setdefault(b, []).append(l)
        p = os.path.join(tmp, "%s-%s-lat.dat" % (workload, policy))
        with open(p, "w") as o:
            for b in sorted(bins):
                o.write("%.2f %.4f\n" % ((b + 0.5) * 0.5, 1000 * statistics.fmean(bins[b])))
        lat_files.append((policy, p))
        p = os.path.join(tmp, "%s-%s-res.dat" % (workload, policy))
        with open(p, "w") as o:
            o.write("0 0\n")
            for t, js in read_status(f["rd"]):
                if f["completion"] is not None and t - f["t0"] >= f["completion"]:
                    break
                o.write("%.2f %.3f\n" % (t - f["t0"], 100.0 * js["blocks_resident"] / js["blocks_total"]))
            if f["completion"] is not None:
                o.write("%.2f 100\n" % f["completion"])
        res_files.append((policy, p))
    colors = {"off": "#000000", "nbdkit-ra": "#999999", "readahead": "#1f77b4",
              "ngram": "#2ca02c", "lstm": "#9467bd", "hybrid": "#d62728"}

    def series(files):
        return ", ".join("'%s' using 1:2 with lines lw 2 lc rgb '%s' title '%s'" % (
            p, colors[pol], LABEL.get(pol, pol)) for pol, p in files)

    gp = """set terminal pngcairo size 1000,560 font 'sans,11'
set grid
set key outside right top
set xlabel 'seconds since the migration started'
set output '{plots}/{w}-latency.png'
set title '{w}: client read latency (mean per 0.5 s), origin {o}'
set ylabel 'ms (log scale)'
set logscale y
plot {lat}
unset logscale y
set output '{plots}/{w}-residency.png'
set title '{w}: blocks resident on the shadow'
set ylabel '% of the volume'
set yrange [0:100]
plot {res}
""".format(plots=plots, w=workload, lat=series(lat_files), res=series(res_files),
           o=os.environ.get("ORIGIN_DESC", "2 ms + 100 MB/s"))
    r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)


def summary(out, plots):
    runs = {}
    for rd in sorted(glob.glob(os.path.join(out, "runs", "*", "*", "*"))):
        if not os.path.exists(os.path.join(rd, "final.json")):
            continue
        wl, policy, rep = rd.split(os.sep)[-3:]
        runs.setdefault(wl, {}).setdefault(rep, {})[policy] = run_figures(rd)
    hdr = os.path.join(out, "header.txt")
    if os.path.exists(hdr):
        print("```")
        print(open(hdr).read().rstrip())
        print("```")
        print()
    verdicts = []
    result = {}
    for wl in [w for w in WORKLOADS if w in runs] + [w for w in runs if w not in WORKLOADS]:
        reps = runs[wl]
        # Stall per run against its repetition's reference.
        rows = {}
        for rep, figs in reps.items():
            refs = [f["ref_p50"] for f in figs.values() if "ref_p50" in f]
            ref = refs[0] if refs else float("nan")
            for policy, f in figs.items():
                f["stall"] = stall(f, ref)
                f["ref"] = ref
                rows.setdefault(policy, []).append(f)
        nrep = len(reps)
        print("### %s%s" % (wl, "" if wl not in DESCR else ": " + DESCR[wl]))
        print()
        refs = [f["ref"] for fs in rows.values() for f in fs]
        # With BACKGROUND=off the volume never syncs: the reference run
        # then reads what the first pass copied, not a synced volume.
        synced = any(f["completion"] is not None for fs in rows.values() for f in fs)
        print("Reference (%s): p50 %s ms; %d repetition%s%s." % (
            "synced volume, all reads from the shadow" if synced else
            "the same workload again, volume not synced (background off)",
            fmt_ms(med(refs)), nrep, "" if nrep == 1 else "s",
            "" if nrep == 1 else ", figures are medians (stall: median [min-max])"))
        print()
        print("| policy | reads | p50 ms | p99 ms | shadow share | stall s | completion s | workload s | prefetched blocks used / copied | copier at window 1 | load at start |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        res = {}
        for policy in POLICIES + [p for p in rows if p not in POLICIES]:
            fs = rows.get(policy)
            if not fs:
                continue
            st = [f["stall"] for f in fs]
            comp = [f["completion"] for f in fs]
            notsync = sum(1 for c in comp if c is None)
            r = {
                "p50": med([f["p50"] for f in fs]), "p99": med([f["p99"] for f in fs]),
                "share": med([f["share"] for f in fs]), "stall": med(st),
                "stall_min": min(st), "stall_max": max(st),
                "completion": med([c for c in comp if c is not None]) if notsync < len(comp) else None,
                "wall": med([f["wall"] for f in fs]),
                "reads": med([f["reads"] for f in fs]),
                "used": med([f["pf_used"] for f in fs]),
                "copied": med([f["pf_copied"] for f in fs]),
                "win1": med([f["win1"] for f in fs]),
            }
            res[policy] = r
            stall_txt = "%.2f" % r["stall"] if nrep == 1 else "%.2f [%.2f-%.2f]" % (
                r["stall"], r["stall_min"], r["stall_max"])
            comp_txt = fmt_s(r["completion"]) + ("" if not notsync else " (%d not synced)" % notsync)
            print("| %s | %d | %s | %s | %.1f%% | %s | %s | %.1f | %d / %d | %.0f%% | %s |" % (
                LABEL.get(policy, policy), r["reads"], fmt_ms(r["p50"]), fmt_ms(r["p99"]),
                100 * r["share"], stall_txt, comp_txt, r["wall"], r["used"], r["copied"],
                100 * r["win1"],
                ", ".join(f["load_start"].split()[0] for f in fs)))
        print()
        result[wl] = res
        if "hybrid" in res and "off" in res:
            h = res["hybrid"]["stall"]
            if wl in RANDOM:
                off = res["off"]["stall"]
                ok = h <= 1.05 * off
                verdicts.append((wl, "random", ok,
                                 "hybrid %.2f s vs no prefetch %.2f s (x%.2f; target <= x1.05)" % (
                                     h, off, h / off if off > 0 else float("inf"))))
            else:
                others = {p: r["stall"] for p, r in res.items() if p != "hybrid"}
                best = min(others, key=others.get)
                ok = h <= others[best]
                verdicts.append((wl, "learnable", ok,
                                 "hybrid %.2f s; best other: %s %.2f s (x%.2f); no prefetch %.2f s" % (
                                     h, LABEL.get(best, best), others[best],
                                     h / others[best] if others[best] > 0 else float("inf"),
                                     res["off"]["stall"])))
        if plots:
            first = sorted(reps)[0]
            plot(wl, reps[first], plots)
            print("Plots: `plots/%s-latency.png`, `plots/%s-residency.png` (repetition %s)." % (wl, wl, first))
            print()
    if verdicts:
        print("### Target: the hybrid has the lowest stall time on every learnable workload, and at most 5% more than no prefetch on random ones")
        print()
        print("| workload | kind | target | figures |")
        print("|---|---|---|---|")
        for wl, kind, ok, txt in verdicts:
            print("| %s | %s | %s | %s |" % (wl, kind, "MET" if ok else "NOT MET", txt))
        print()
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=1, default=lambda x: None)


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--one":
        one(args[1])
        return
    plots = None
    if len(args) >= 2 and args[0] == "--plots":
        plots = os.path.abspath(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    summary(args[0], plots)


if __name__ == "__main__":
    main()
