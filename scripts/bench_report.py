#!/usr/bin/env python3
"""Turns the JSON results of scripts/bench.sh into the generated section of
BENCHMARKS.md (between its two markers), or into a stand-alone file with
--quick. In --quick mode it also checks that the tooling measured something
real: every jobcast client connected, nothing was lost, every $disconnect ran.
"""
import json
import os
import platform
import subprocess
import sys
from datetime import date

START = "<!-- bench.sh: start (generated, do not edit by hand) -->"
END = "<!-- bench.sh: end -->"


def load(folder, name):
    path = os.path.join(folder, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    return (
        f"{os.cpu_count()} vCPUs ({cpu}), {mem} GiB RAM, Linux {platform.release()}, "
        f"{version(['rustc', '--version'])}, Node {version(['node', '--version'])}"
    )


def n(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(ours, theirs, higher_is_better=True):
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return "n/a"
    r = ours / theirs if higher_is_better else theirs / ours
    return f"{r:,.1f}×"


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def rows_side_by_side(j, p):
    """(metric, jobcast, peer, ratio) rows at the same client count."""
    rows = []

    def add(label, path, digits=0, unit="", higher=True):
        a, b = get(j, *path), get(p, *path)
        rows.append((label, n(a, digits) + unit if a is not None else "n/a",
                     n(b, digits) + unit if b is not None else "n/a",
                     ratio(a, b, higher) if higher is not None else ""))

    add("clients connected (of requested)", ("connect", "identified"), higher=None)
    add("connect rate", ("connect", "perSecond"), 0, "/s")
    add("handshake p50", ("connect", "handshake", "p50Ms"), 2, " ms", False)
    add("handshake p99", ("connect", "handshake", "p99Ms"), 2, " ms", False)
    add("`@connections` posts accepted (64 in flight)", ("posts", "perSecond"), 0, "/s")
    add("messages delivered", ("posts", "deliveredPerSecond"), 0, "/s")
    add("end-to-end p50 at full load", ("posts", "endToEnd", "p50Ms"), 2, " ms", False)
    add("end-to-end p99 at full load", ("posts", "endToEnd", "p99Ms"), 2, " ms", False)
    add("end-to-end p99.9 at full load", ("posts", "endToEnd", "p999Ms"), 2, " ms", False)
    add("server CPU per post", ("posts", "serverCpuUsPerMessage"), 1, " µs", False)
    rate = get(j, "paced", "rate")
    if rate:
        add(f"paced {n(rate)}/s: rate achieved", ("paced", "deliveredPerSecond"), 0, "/s", None)
        add(f"paced {n(rate)}/s: end-to-end p50", ("paced", "endToEnd", "p50Ms"), 2, " ms", False)
        add(f"paced {n(rate)}/s: end-to-end p99", ("paced", "endToEnd", "p99Ms"), 2, " ms", False)
    add("fan-out to every client via `@connections` (publisher, SDK), p50", ("fanout", "msP50"), 1, " ms", False)
    add("server RSS idle", ("memory", "idleKib"), 0, " KiB", False)
    add("server RSS with every client connected", ("memory", "connectedKib"), 0, " KiB", False)
    add("server RSS per connection", ("memory", "perConnectionKib"), 1, " KiB", False)
    add("server RSS under load (peak)", ("memory", "underLoadKib"), 0, " KiB", False)
    add("server RSS after every client closed", ("memory", "afterCloseKib"), 0, " KiB", False)
    lost_j, lost_p = lost(j), lost(p)
    rows.append(("messages accepted but never delivered", n(lost_j), n(lost_p), ""))
    rows.append(("`$disconnect` run / clients closed", disc(j), disc(p), ""))
    return rows


def lost(r):
    if r is None:
        return None
    total = 0
    for phase in ("posts", "paced", "fanout", "inProcessFanout"):
        total += (r.get(phase) or {}).get("lost", 0)
    return total


def disc(r):
    if r is None:
        return "n/a"
    c = r["close"]
    obs = c.get("disconnectsObserved")
    return f"{n(obs)} / {n(c['closed'] + c['droppedEarly'])}" if obs is not None else "n/a"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def targets(big, small, peer):
    """Targets against the 10,000-client run; ratios against the peer from
    the 1,000-client runs, one row each."""
    rows = []

    def t(label, value, goal, ok, note=""):
        rows.append((label, value, goal, "met" if ok else f"missed{note}"))

    held = get(big, "connect", "identified") or 0
    t("connections held", n(held), "10,000", held >= 10000)
    cr = get(big, "connect", "perSecond") or 0
    t("connect rate", n(cr) + "/s", "≥ 5,000/s", cr >= 5000, f" ({cr / 5000:.0%} of it)")
    ps = get(big, "posts", "perSecond") or 0
    t("`@connections` posts at 64 in flight", n(ps) + "/s", "≥ 50,000/s", ps >= 50000, f" ({ps / 50000:.0%} of it)")
    cpu = get(big, "posts", "serverCpuUsPerMessage") or 0
    t("server CPU per `@connections` post", n(cpu, 1) + " µs", "≤ 10 µs", cpu <= 10, f" ({cpu / 10:.1f}× it)")
    ip = get(big, "inProcessFanout", "deliveredPerSecond") or 0
    t("in-process fan-out delivered, 10,000 subscribers", n(ip) + "/s", "≥ 1,000,000/s", ip >= 1e6, f" ({ip / 1e6:.0%} of it)")
    fcpu = get(big, "inProcessFanout", "serverCpuUsPerMessage") or 0
    t("server CPU per fanned-out message", n(fcpu, 2) + " µs", "≤ 1.5 µs", fcpu <= 1.5, f" ({fcpu / 1.5:.1f}× it)")
    p99 = get(big, "paced", "endToEnd", "p99Ms")
    t(f"end-to-end p99 at {n(get(big, 'paced', 'rate'))} msg/s, paced", n(p99, 2) + " ms", "≤ 2 ms", p99 is not None and p99 <= 2)
    per = get(big, "memory", "perConnectionKib") or 0
    t("RSS per idle connection", n(per, 1) + " KiB", "≤ 10 KiB", per <= 10, f" ({per / 10:.0%} of it)")
    lb = lost(big)
    t("lost messages", n(lb), "0", lb == 0)
    for label, path, higher in (
        ("connect rate", ("connect", "perSecond"), True),
        ("posts accepted", ("posts", "perSecond"), True),
        ("server CPU per post", ("posts", "serverCpuUsPerMessage"), False),
        ("end-to-end p99, paced", ("paced", "endToEnd", "p99Ms"), False),
        ("RSS per connection", ("memory", "perConnectionKib"), False),
        ("fan-out via `@connections` (publisher, SDK)", ("fanout", "msP50"), False),
    ):
        a, b = get(small, *path), get(peer, *path)
        if a and b:
            r = a / b if higher else b / a
            t(f"{label}: ≥ 10× serverless-offline (1,000 clients)", f"{r:,.1f}×", "≥ 10×", r >= 10)
    return rows


def render(folder, quick):
    j = load(folder, "jobcast-small")
    p = load(folder, "peer-small")
    big = load(folder, "jobcast-10k")
    huge = load(folder, "jobcast-50k")
    if j is None:
        sys.exit("no jobcast result in " + folder)
    clients = j["clients"]
    lines = [
        START,
        "",
        f"## Side by side: jobcast and serverless-offline ({date.today().isoformat()})",
        "",
        f"Machine: {machine()}. The load generator, the server under test and",
        "everything else share these cores; compare figures within one run.",
        "",
        "```sh",
        "./scripts/bench.sh" + (" --quick" if quick else ""),
        "```",
        "",
    ] + ([
        "**Quick run on a debug build: it proves the tooling works; its figures",
        "mean nothing.**",
        "",
    ] if quick else []) + [
        f"Both servers measured by the same `jobcast bench run` with {n(clients)} WebSocket",
        "clients, `@connections` posts from 64 keep-alive HTTP/1.1 connections, a",
        "paced phase, and a fan-out through jobcast's publisher (AWS SDK, SigV4).",
        "serverless-offline 13.10.1 (serverless 3.40.0) runs the equivalent",
        "handlers in `bench/peer/` with its defaults. Ratio: how many times better",
        "jobcast is (higher rate, or lower latency and memory).",
        "",
        table(("figure", "jobcast", "serverless-offline", "ratio"), rows_side_by_side(j, p)),
        "",
    ]
    if j.get("inProcessFanout"):
        f = j["inProcessFanout"]
        lines += [
            f"In-process fan-out (jobcast only: `serve`'s own worker publishing a demo job of",
            f"{f['updates']} updates back to back to {n(f['subscribers'])} subscribers): "
            f"{n(f['delivered'])}/{n(f['expected'])} delivered in {f['seconds']:.2f} s, "
            f"{n(f['deliveredPerSecond'])} messages/s, {n(f.get('serverCpuUsPerMessage'), 2)} µs of server CPU each.",
            "",
        ]
    if p is not None:
        errs = p["connect"].get("errors") or {}
        if errs:
            lines += ["serverless-offline connection errors: " + ", ".join(f"{k} ×{v}" for k, v in errs.items()) + ".", ""]
    if big is not None:
        lines += [
            "### jobcast at 10,000 clients, against the targets",
            "",
            table(("figure", "jobcast", "target", ""), targets(big, j, p)),
            "",
            table(("figure", "jobcast, 10,000 clients"),
                  [(r[0], r[1]) for r in rows_side_by_side(big, None)]),
            "",
        ]
        if big.get("inProcessFanout"):
            f = big["inProcessFanout"]
            lines += [
                f"In-process fan-out at 10,000 subscribers: {f['updates']} updates, "
                f"{n(f['delivered'])}/{n(f['expected'])} delivered in {f['seconds']:.2f} s = "
                f"{n(f['deliveredPerSecond'])} messages/s, {n(f.get('serverCpuUsPerMessage'), 2)} µs of server CPU each.",
                "",
            ]
    if huge is not None:
        c = huge["connect"]
        errs = ", ".join(f"{k} ×{v}" for k, v in (c.get("errors") or {}).items()) or "none"
        lines += [
            "### 50,000 clients",
            "",
            f"Requested {n(c['requested'])} over 4 source addresses: {n(c['identified'])} connected "
            f"({n(c['perSecond'])}/s); errors: {errs}. Server RSS with them connected: "
            f"{n(get(huge, 'memory', 'connectedKib'))} KiB "
            f"({n(get(huge, 'memory', 'perConnectionKib'), 1)} KiB per connection). "
            f"Posts while connected: {n(get(huge, 'posts', 'perSecond'))}/s, lost {n(lost(huge))}.",
            "",
        ]
    lines += aws_section(folder)
    lines.append(END)
    return "\n".join(lines) + "\n"


def text(folder, name):
    path = os.path.join(folder, name)
    return open(path).read().strip() if os.path.exists(path) else None


def aws_section(folder):
    """What a job costs in AWS and how long a fan-out takes at AWS latency."""
    cost = text(folder, "cost.md")
    if cost is None:
        return []
    lines = [
        "## What progress costs in AWS",
        "",
        "`jobcast bench cost` runs one job per audience size the way a deployment does:",
        "`POST /jobs` through the jobs Lambda's handler and every",
        "`POST /jobs/{id}/updates` through the updates Lambda's (the function URL",
        "workers report to), both in this process, real WebSocket clients, every `@connections` post",
        "over HTTP with the AWS SDK, the store on DynamoDB Local asked for its",
        "`ConsumedCapacity` on every request. Lambda time is wall time here, with",
        "DynamoDB Local (a JVM on the same cores) standing in for DynamoDB; a",
        "256 MB Lambda has about a seventh of a vCPU, so its CPU-bound part would",
        "take longer. \"The update alone\" is what one more update costs; \"whole job\"",
        "adds `POST /jobs`, each subscriber's `$connect`, `$disconnect` and one",
        "connection minute, divided over the job's updates.",
        "",
        cost,
        "",
    ]
    paced = text(folder, "cost-paced.md")
    if paced:
        lines += [
            "A worker reporting every 1.1 s (12 updates, S = 10), where the liveness",
            "deadline an update stores moves between updates:",
            "",
            paced,
            "",
        ]
    every, coalesced = text(folder, "cost-coalesce-0.md"), text(folder, "cost-coalesce-500ms.md")
    if every and coalesced:
        lines += [
            "A worker reporting every 100 ms (100 updates, S = 10), every update",
            "pushed:",
            "",
            every,
            "",
            "The same worker with coalescing in 500 ms windows (`--coalesce 500ms`,",
            "the template's `CoalesceMs=500`): while updates keep coming, each window",
            "pushes only its newest, through the sweeper:",
            "",
            coalesced,
            "",
        ]
    path = os.path.join(folder, "fanout-latency.jsonl")
    if os.path.exists(path):
        runs = [json.loads(l) for l in open(path) if l.strip()]
        rows = [(
            f"{n(r['managementLatencyMs'])} ms",
            f"{r['inFlight']} (fixed)" if r.get("fixedInFlight") else f"{r['inFlight']} (planned)",
            f"{n(r['fanoutMsP50'], 1)} ms",
            f"{n(r['publishMsP50'], 1)} ms",
            f"{r['publishMsP50'] / 1000 * 0.25 * 0.0000133334 * 1e6:.2f}",
            n(r["lost"]),
        ) for r in runs]
        sub = runs[0]["subscribers"] if runs else 0
        lines += [
            f"### Fan-out to {n(sub)} subscribers at AWS latency",
            "",
            "`jobcast bench fanout --push http --management-latency L` (each `@connections`",
            "answer L later, as AWS's round trip), with the publisher's fixed 64 in flight",
            "before and its planned number after. The publish call's time is what a",
            "256 MB Lambda publishing the update is billed for.",
            "",
            table(("round trip", "posts in flight", "last browser has it (p50)", "publish call (p50)",
                   "Lambda $ per million publishes", "lost"), rows),
            "",
        ]
    return lines


def check_quick(folder):
    j = load(folder, "jobcast-small")
    problems = []
    if j["connect"]["identified"] != j["clients"]:
        problems.append(f"only {j['connect']['identified']} of {j['clients']} clients connected")
    if lost(j):
        problems.append(f"{lost(j)} messages lost")
    if j["posts"]["delivered"] == 0:
        problems.append("no post was delivered")
    f = j.get("inProcessFanout") or {}
    if f.get("delivered", 0) != f.get("expected", -1):
        problems.append("in-process fan-out incomplete")
    obs = j["close"].get("disconnectsObserved")
    if obs != j["connect"]["identified"]:
        problems.append(f"$disconnect ran {obs} times for {j['connect']['identified']} clients")
    if load(folder, "peer-small") is None:
        problems.append("serverless-offline was not measured")
    if problems:
        sys.exit("bench: " + "; ".join(problems))


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    folder, target = args
    section = render(folder, quick)
    if quick:
        check_quick(folder)
        with open(target, "w") as f:
            f.write(section)
        return
    text = open(target).read() if os.path.exists(target) else "# Benchmarks\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(target, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
