#!/usr/bin/env python3
"""The conformance report of a boot-test run: one self-contained HTML page (inline CSS and SVG, no
scripts, fonts or anything fetched), per kernel and driver:

  - the result lines (PASS/FAIL/XFAIL/SKIP) by scenario;
  - the CRQ message types each direction carried (guest->hv: SUBMIT records, hv->guest: POST) and the
    hcalls with their return codes, counted over the run's traces;
  - the adapter and session states the traffic reached (init, capabilities, HMC open/close, buffers,
    transport events, resets, ...);
  - the faults injected (scenarios faults/NAME, tests/guest/faults/NAME.faults) and the driver's
    reaction, and the driver traps that fired (XFAIL lines);
  - per scenario a sequence diagram of its CRQ traffic (guest/driver and hypervisor/vmcd lifelines).

Inputs (scripts/lib/report.sh makes them), in each run: DIR/runs/RUN/ (and DIR itself):
results.txt, vmcd-traces/STEM.N.jsonl (the records of `vmcctl trace --read FILE --json`) with
STEM.N.meta (kernel, driver, vmcd options), and traces/*.jsonl (fault scenarios' own recordings,
used when vmcd-traces has none for a scenario). A result line's driver is its run's for its kernel.

    report.py --dir DIR [--faults-dir D] [--known-bugs FILE] [--out FILE] [--max-rows N]
    report.py --jsonl FILE... --kernel K --scenario S --out FILE   (a report of given traces only)
"""
import argparse
import collections
import datetime
import glob
import html
import json
import os
import re
import sys

MAX_ROWS = 60

# ---------------------------------------------------------------- inputs


def read_results(path):
    """[(verdict, name, message)] from result lines."""
    out = []
    if not path or not os.path.exists(path):
        return out
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^(PASS|FAIL|XFAIL|SKIP): (.*)$", line.rstrip("\n"))
        if not m:
            continue
        rest = m.group(2)
        name, _, msg = rest.partition(": ")
        out.append((m.group(1), name, msg))
    return out


def split_name(name):
    """kernel, scenario, check of a result name (6.1/basic/echo, 6.1/faults/NAME/check)."""
    parts = name.split("/")
    if len(parts) < 2:
        return "", name, ""
    if parts[1] == "faults" and len(parts) >= 4:
        return parts[0], "faults/" + parts[2], "/".join(parts[3:])
    return parts[0], parts[1], "/".join(parts[2:])


def scenario_of_stem(rest):
    """The scenario a trace belongs to from its file stem without the kernel (fault-NAME -> faults/NAME)."""
    if rest.startswith("fault-"):
        return "faults/" + rest[len("fault-"):]
    return rest


def read_records(path):
    recs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except ValueError:
                break   # a line cut short: keep what came before
    return recs


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        for line in open(path, encoding="utf-8", errors="replace"):
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    return meta


class Trace:
    def __init__(self, path, kernel, driver, scenario, label, records):
        self.path, self.kernel, self.driver, self.scenario, self.label = path, kernel, driver, scenario, label
        self.records = records


def find_runs(d):
    """The runs of a report directory: DIR itself and DIR/runs/* (scripts/lib/report.sh keeps one
    per kernels and driver, so a stock run and a --driver-src run make one report). Returns
    (results as (verdict, name, message, driver), traces)."""
    results, traces = [], []
    for run in [d] + sorted(glob.glob(os.path.join(d, "runs", "*"))):
        res = read_results(os.path.join(run, "results.txt"))
        kernels = {split_name(n)[0] for _, n, _ in res}
        tr = find_traces(run, kernels)
        driver = {t.kernel: t.driver for t in tr}
        results += [(v, n, m, driver.get(split_name(n)[0], "stock")) for v, n, m in res]
        traces += tr
    return results, traces


def find_traces(d, kernels):
    """Traces of the run: vmcd-traces/ (every vmcd), then traces/ for scenarios that have none."""
    traces = []
    for j in sorted(glob.glob(os.path.join(d, "vmcd-traces", "*.jsonl")), key=natural):
        base = j[:-len(".jsonl")]
        meta = read_meta(base + ".meta")
        stem, _, n = os.path.basename(base).rpartition(".")
        kernel = meta.get("kernel") or stem.split("-", 1)[0]
        rest = stem[len(kernel) + 1:] if stem.startswith(kernel + "-") else stem
        traces.append(Trace(j, kernel, meta.get("driver", "stock"), scenario_of_stem(rest), f"vmcd {n}", read_records(j)))
    seen = {(t.kernel, t.scenario) for t in traces}
    drivers = {t.kernel: t.driver for t in traces}
    for j in sorted(glob.glob(os.path.join(d, "traces", "*.jsonl")), key=natural):
        stem = os.path.basename(j)[:-len(".jsonl")]
        kernel = next((k for k in sorted(kernels, key=len, reverse=True) if stem.startswith(k + "-")), stem.split("-", 1)[0])
        sc = scenario_of_stem(stem[len(kernel) + 1:])
        if (kernel, sc) in seen:
            continue
        traces.append(Trace(j, kernel, drivers.get(kernel, "stock"), sc, "trace", read_records(j)))
    return traces


def natural(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


def read_fault_files(d):
    """{name: (description lines, rules)} of tests/guest/faults/*.faults."""
    out = {}
    for f in sorted(glob.glob(os.path.join(d or "", "*.faults"))):
        desc, rules = [], []
        for line in open(f, encoding="utf-8", errors="replace"):
            line = line.rstrip("\n")
            if line.startswith("#"):
                t = line.lstrip("#").strip()
                if t and not re.match(r"^(vmcd|guest):", t):
                    desc.append(t)
            elif line.split("#")[0].strip():
                rules.append(line.split("#")[0].strip())
        out[os.path.basename(f)[:-len(".faults")]] = (desc, rules)
    return out


# ---------------------------------------------------------------- what the traffic shows

# (key, description): every state the report looks for, in protocol order
STATES = [
    ("crq-registered", "CRQ registered (H_REG_CRQ = H_SUCCESS)"),
    ("crq-reconnect", "CRQ registered again after a reset (reconnect)"),
    ("init-guest", "INIT sent by the driver"),
    ("init-hv", "INIT sent by the hypervisor"),
    ("init-complete", "init complete (INIT_RESP)"),
    ("caps", "capabilities exchanged (CAP, CAP_RESP status 0)"),
    ("caps-refused", "capabilities answered with a non-zero status"),
    ("buffers-partition", "partition buffers added (ADD_BUF, ADD_BUF_RESP)"),
    ("buffers-hv", "hypervisor-owned buffer added"),
    ("drc", "H_REQUEST_VMC answered"),
    ("hmc-open", "HMC session open (OPEN_RESP Success)"),
    ("hmc-open-refused", "HMC open answered with a non-zero status"),
    ("signal-g2h", "HMC message guest->hv (SIGNAL)"),
    ("signal-h2g", "HMC message hv->guest (SIGNAL)"),
    ("rdma-both", "H_COPY_RDMA both ways"),
    ("hmc-close", "HMC session closed (CLOSE, CLOSE_RESP)"),
    ("rem-buf", "buffer taken back (REM_BUF, REM_BUF_RESP)"),
    ("transport-g2h", "transport event from the driver"),
    ("transport-h2g", "transport event to the driver"),
    ("free-crq", "CRQ freed (H_FREE_CRQ)"),
    ("reset", "device reset (system reset, VM disconnect)"),
    ("attach", "HMC handed to a host program and back (attach, detach)"),
    ("hcall-error", "an hcall answered with an error rc"),
    ("failed", "channel failed by the hypervisor (CHANNEL_FAILED)"),
    ("fault-record", "fault records in the trace"),
    ("lost", "trace records lost (reader too slow)"),
]
KNOWN_TYPES = {"SUBMIT", "POST", "REG_CRQ", "FREE_CRQ", "COPY_RDMA", "REQUEST_VMC", "RESET", "POLL", "RESULT",
               "MEMORY", "MESSAGE", "FAILED", "TIME", "VM_START", "VM_END", "ATTACH", "DETACH", "HOST_SEND", "LOST"}
INPUTS = {"SUBMIT", "REG_CRQ", "FREE_CRQ", "COPY_RDMA", "REQUEST_VMC", "RESET", "POLL", "ATTACH", "DETACH", "HOST_SEND"}
HCALLS = {"REG_CRQ": "H_REG_CRQ", "FREE_CRQ": "H_FREE_CRQ", "COPY_RDMA": "H_COPY_RDMA", "REQUEST_VMC": "H_REQUEST_VMC"}
MSG_ORDER = ["INIT", "INIT_RESP", "CAP", "CAP_RESP", "OPEN", "OPEN_RESP", "CLOSE", "CLOSE_RESP", "ADD_BUF",
             "ADD_BUF_RESP", "REM_BUF", "REM_BUF_RESP", "SIGNAL", "TRANSPORT_EVENT"]


def msg_name(r):
    m = r.get("msg", "?")
    return m if m in MSG_ORDER else "other (" + m + ")" if not m.startswith(("VALID_", "INIT_", "message type")) else "other"


def analyse(records):
    """(message counts {msg: [g2h, h2g]}, hcall counts {(hcall, rc): n}, states set, fault texts)."""
    msgs = collections.defaultdict(lambda: [0, 0])
    hcalls = collections.Counter()
    st = set()
    faults = []
    pending = None
    for r in records:
        t = r.get("type")
        if t in ("SUBMIT", "POST"):
            g2h = t == "SUBMIT"
            m = r.get("msg", "")
            msgs[msg_name(r)][0 if g2h else 1] += 1
            if m == "INIT":
                st.add("init-guest" if g2h else "init-hv")
            elif m == "INIT_RESP":
                st.add("init-complete")
            elif m == "CAP_RESP":
                st.add("caps" if r.get("status") == 0 else "caps-refused")
            elif m == "ADD_BUF_RESP" and r.get("status") == 0:
                st.add("buffers-partition")
            elif m == "ADD_BUF" and r.get("owner") == "hv":
                st.add("buffers-hv")
            elif m == "OPEN_RESP":
                st.add("hmc-open" if r.get("status") == 0 else "hmc-open-refused")
            elif m == "SIGNAL":
                st.add("signal-g2h" if g2h else "signal-h2g")
            elif m == "CLOSE_RESP":
                st.add("hmc-close")
            elif m == "REM_BUF_RESP":
                st.add("rem-buf")
            elif m == "TRANSPORT_EVENT":
                st.add("transport-g2h" if g2h else "transport-h2g")
        if t in HCALLS:
            pending = r
            continue
        if t in ("MEMORY", "TIME", "MESSAGE"):
            continue   # within an hcall's group, before its RESULT
        if t == "RESULT" and pending is not None:
            p_ = pending
            pending = None
            name = HCALLS[p_["type"]]
            if p_["type"] == "COPY_RDMA":
                name += " " + p_.get("direction", "")
            hcalls[(name, r.get("rc_name", "?"))] += 1
            if r.get("rc", 0) != 0:
                st.add("hcall-error")
            elif p_["type"] == "REG_CRQ":
                st.add("crq-reconnect" if p_.get("reconnect") else "crq-registered")
            elif p_["type"] == "REQUEST_VMC":
                st.add("drc")
            elif p_["type"] == "FREE_CRQ":
                st.add("free-crq")
            continue
        if t in INPUTS:
            pending = None   # the next input: an hcall without a RESULT stays uncounted
        if t == "RESET":
            st.add("reset")
        elif t == "ATTACH":
            st.add("attach")
        elif t == "FAILED":
            st.add("failed")
        elif t == "LOST":
            st.add("lost")
        elif t not in KNOWN_TYPES:
            st.add("fault-record")
            faults.append(r.get("text", t))
    dirs = {k[0] for k in hcalls if k[0].startswith("H_COPY_RDMA")}
    if len(dirs) >= 2:
        st.add("rdma-both")
    return msgs, hcalls, st, faults


# ---------------------------------------------------------------- sequence diagram

def entry_label(r):
    m = r.get("msg", "?")
    if m in ("INIT", "INIT_RESP"):
        return m
    if m == "TRANSPORT_EVENT":
        return "TRANSPORT_EVENT 0x%02X" % r.get("event", 0)
    if m in ("CAP", "CAP_RESP"):
        s = " status %d" % r["status"] if "status" in r else ""
        return "%s%s MTU %s pool %s HMCs %s v0x%04X" % (m, s, r.get("mtu"), r.get("pool"), r.get("hmcs"), r.get("version", 0))
    if "session" not in r:
        return r.get("text", m).split("  [")[0]
    lab = m
    if "status" in r:
        lab += " " + (r.get("status_name") or str(r["status"]))
    lab += " hmc %s s%s" % (r.get("hmc"), r.get("session"))
    lab += " buf %s" % ("none" if r.get("buffer") is None else r.get("buffer"))
    if m == "ADD_BUF":
        lab += " (%s)" % r.get("owner")
    if m == "SIGNAL":
        lab += " len %s" % r.get("length")
    return lab


def bad_entry(r):
    m = r.get("msg", "")
    return (r.get("status", 0) != 0) or m == "TRANSPORT_EVENT" or m not in MSG_ORDER


class Row:
    """One row of a diagram: kind 'g2h'/'h2g' (arrow), 'note' (across both lifelines)."""

    def __init__(self, kind, t, label, cls="", key=None, buf=None):
        self.kind, self.t, self.label, self.cls, self.key, self.n = kind, t, label, cls, key, 1
        self.bufs = [buf] if buf is not None else []


def diagram_rows(records):
    rows = []
    vms = {r.get("vm") for r in records if r.get("type") == "VM_START"}
    multi = len(vms) > 1
    pending = open_row = None

    def add(row, vm):
        if multi and vm:
            row.label = vm + ": " + row.label
            row.key = (vm, row.key) if row.key else None
        last = rows[-1] if rows else None
        # consecutive same entries (ADD_BUF for a whole pool) become one row "x N"
        if last and row.key is not None and last.key == row.key and last.kind == row.kind:
            last.n += 1
            last.bufs += row.bufs
            return
        rows.append(row)

    for r in records:
        t, vm, ts = r.get("type"), r.get("vm"), r.get("t", 0.0)
        if t in ("MEMORY", "TIME", "MESSAGE", "POLL"):
            continue   # not CRQ traffic (an H_COPY_RDMA's memory accesses come before its RESULT)
        if pending is not None and t != "RESULT":
            # drawn now; an output of its group (REG_CRQ's INIT) comes before its RESULT
            add(pending, vm)
            open_row = pending if t not in INPUTS else None
            pending = None
        elif t in INPUTS:
            open_row = None
        if t in ("SUBMIT", "POST"):
            kind = "g2h" if t == "SUBMIT" else "h2g"
            m = r.get("msg", "?")
            if m in ("ADD_BUF", "ADD_BUF_RESP", "REM_BUF", "REM_BUF_RESP") and r.get("status", 0) == 0:
                key = (m, r.get("hmc"), r.get("session"), r.get("owner"))
                lab = "%s hmc %s s%s" % (m, r.get("hmc"), r.get("session")) + (" (%s)" % r["owner"] if "owner" in r else "")
                add(Row(kind, ts, lab, "", key, r.get("buffer")), vm)
            else:
                add(Row(kind, ts, entry_label(r), "bad" if bad_entry(r) else ""), vm)
        elif t in HCALLS:
            lab = r.get("text", t)
            if t == "COPY_RDMA":
                lab = "H_COPY_RDMA %s %s bytes" % (r.get("direction"), r.get("length"))
            pending = Row("g2h", ts, lab, "hcall", None)
        elif t == "RESULT":
            if pending is not None or open_row is not None:
                row = pending or open_row
                row.label += " = " + r.get("rc_name", "?")
                if r.get("rc", 0) != 0:
                    row.cls = "bad"
                elif pending is not None and row.label.startswith("H_COPY_RDMA"):
                    row.key = ("rdma", row.label)
                if pending is not None:
                    add(pending, vm)
                pending = open_row = None
            elif r.get("rc", 0) != 0:
                add(Row("h2g", ts, "= " + r.get("rc_name", "?"), "bad"), vm)
        elif t == "VM_START":
            add(Row("note", ts, "VM %s connected: offers MTU %s, pool %s, HMCs %s%s" % (
                r.get("name"), r.get("max_mtu"), r.get("pool_size"), r.get("max_hmcs"),
                " (already running: joined)" if r.get("joined") else "")), None)
        elif t == "VM_END":
            add(Row("note", ts, "VM %s disconnected" % vm), None)
        elif t == "RESET":
            add(Row("note", ts, "device reset", "warn"), vm)
        elif t in ("ATTACH", "DETACH", "LOST"):
            add(Row("note", ts, r.get("text", t), "warn" if t == "LOST" else ""), vm)
        elif t == "FAILED":
            add(Row("note", ts, r.get("text", t), "bad"), vm)
        elif t == "HOST_SEND":
            add(Row("note", ts, r.get("text", t), "", ("host", r.get("hmc"))), vm)
        elif t not in KNOWN_TYPES:
            add(Row("note", ts, "fault: " + r.get("text", t), "fault"), vm)
    if pending is not None:
        rows.append(pending)
    for row in rows:
        if row.n > 1:
            b = [x for x in row.bufs if x is not None]
            rng = " buffers %s..%s" % (b[0], b[-1]) if len(b) > 1 else ""
            row.label += " x%d%s" % (row.n, rng)
        elif row.bufs:
            row.label += " buf %s" % ("none" if row.bufs[0] is None else row.bufs[0])
    return rows


def esc(s):
    return html.escape(str(s), quote=True)


def svg_diagram(records, max_rows=MAX_ROWS):
    rows = diagram_rows(records)
    shown, more = rows[:max_rows], len(rows) - max_rows
    W, top, dy = 960, 56, 22
    gx, hx = 250, 830
    h = top + dy * (len(shown) + (1 if more > 0 else 0)) + 24
    o = ['<svg xmlns="http://www.w3.org/2000/svg" class="seq" width="%d" height="%d" viewBox="0 0 %d %d" role="img">' % (W, h, W, h)]
    o.append('<title>CRQ sequence: %d rows%s</title>' % (len(rows), ", first %d drawn" % max_rows if more > 0 else ""))
    o.append('<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             '<path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
             '<marker id="ab" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             '<path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>')
    for x, name in ((gx, "guest / ibmvmc driver"), (hx, "hypervisor / vmcd")):
        o.append('<rect x="%d" y="8" width="180" height="26" rx="4" class="head"/>' % (x - 90))
        o.append('<text x="%d" y="26" text-anchor="middle" class="hd">%s</text>' % (x, esc(name)))
        o.append('<line x1="%d" y1="34" x2="%d" y2="%d" class="life"/>' % (x, x, h - 10))
    o.append('<text x="8" y="48" class="tm">t (s)</text>')
    y = top
    for row in shown:
        o.append('<text x="8" y="%d" class="tm">%.6f</text>' % (y + 4, row.t))
        if row.kind == "note":
            o.append('<rect x="%d" y="%d" width="%d" height="18" rx="3" class="note %s"/>' % (gx - 60, y - 11, hx - gx + 120, row.cls))
            o.append('<text x="%d" y="%d" text-anchor="middle" class="lbl">%s</text>' % ((gx + hx) // 2, y + 3, esc(row.label)))
        else:
            x1, x2 = (gx, hx) if row.kind == "g2h" else (hx, gx)
            bad = "bad" in row.cls
            o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="arr %s" marker-end="url(#%s)"/>' % (
                x1, y + 6, x2, y + 6, row.cls, "ab" if bad else "a"))
            o.append('<text x="%d" y="%d" text-anchor="middle" class="lbl %s">%s</text>' % ((gx + hx) // 2, y + 2, row.cls, esc(row.label)))
        y += dy
    if more > 0:
        o.append('<text x="%d" y="%d" text-anchor="middle" class="more">... %d more rows not drawn (%d records in the trace)</text>' % (
            (gx + hx) // 2, y + 4, more, len(records)))
    o.append("</svg>")
    return "\n".join(o), len(rows)


# ---------------------------------------------------------------- page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px 32px;color:#1d2330;background:#fff;max-width:1200px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:21px;border-bottom:2px solid #2c5aa0;padding-bottom:4px;margin-top:36px}
h3{font-size:17px;margin:22px 0 8px;color:#2c5aa0} h4{font-size:15px;margin:16px 0 6px}
.sub{color:#555;margin:0 0 14px} table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top} th{background:#eef2f8}
td.n{text-align:right;font-variant-numeric:tabular-nums} .zero{color:#aaa}
.b{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff}
.PASS{background:#2e8b57}.FAIL{background:#c0392b}.XFAIL{background:#d98c10}.SKIP{background:#888}
.yes{color:#2e8b57;font-weight:600}.no{color:#aaa} .q{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;white-space:pre-wrap;color:#333}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0}.card{border:1px solid #d5d9e0;border-radius:6px;padding:8px 14px;min-width:110px}
.card .v{font-size:22px;font-weight:700}.card .k{font-size:12px;color:#555}
svg.seq{border:1px solid #d5d9e0;border-radius:6px;background:#fcfdff;display:block;margin:4px 0 14px}
svg .head{fill:#2c5aa0} svg .hd{fill:#fff;font:600 12px system-ui,"DejaVu Sans",sans-serif}
svg .life{stroke:#8a99b3;stroke-dasharray:4 3} svg .tm{font:10px ui-monospace,"DejaVu Sans Mono",monospace;fill:#777}
svg .arr{stroke:#333;stroke-width:1.3} svg .arr.hcall{stroke:#2c5aa0;stroke-dasharray:5 3} svg .arr.bad{stroke:#c0392b}
svg .lbl{font:11.5px ui-monospace,"DejaVu Sans Mono",monospace;fill:#1d2330} svg .lbl.bad{fill:#c0392b} svg .lbl.hcall{fill:#2c5aa0}
svg .note{fill:#eef2f8;stroke:#b8c4d8} svg .note.warn{fill:#fff3d6;stroke:#e0b050} svg .note.bad{fill:#fde3e0;stroke:#c0392b}
svg .note.fault{fill:#ffe2c4;stroke:#d9771a} svg .more{font:italic 12px system-ui,"DejaVu Sans",sans-serif;fill:#555}
.cols{display:flex;gap:28px;align-items:flex-start}.cols>div{flex:1 1 0;min-width:0}
details{margin:4px 0 10px} summary{cursor:pointer;color:#2c5aa0}
"""


def badge(v):
    return '<span class="b %s">%s</span>' % (v, v)


def group_label(kernel, driver):
    return "Kernel %s, %s driver" % (kernel, "stock" if driver == "stock" else driver.replace("given ", "given: "))


def scenario_anchor(kernel, driver, sc):
    return "sc-" + re.sub(r"[^A-Za-z0-9]+", "-", "%s-%s-%s" % (kernel, driver, sc))


def render(results, traces, fault_files, known_bugs, max_rows=MAX_ROWS, title_note=""):
    kernels = []
    for r in results:
        k = split_name(r[1])[0]
        if k and k not in kernels and k != "report":
            kernels.append(k)
    for t in traces:
        if t.kernel not in kernels:
            kernels.append(t.kernel)
    drivers = collections.defaultdict(list)
    for t in traces:
        if t.driver not in drivers[t.kernel]:
            drivers[t.kernel].append(t.driver)
    for r in results:
        if r[3] not in drivers[split_name(r[1])[0]]:
            drivers[split_name(r[1])[0]].append(r[3])
    groups = []
    for k in kernels:
        for d in drivers.get(k) or ["stock"]:
            groups.append((k, d))

    total = collections.Counter(r[0] for r in results)
    p = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>VmcBackend conformance report</title>',
         '<style>%s</style></head><body>' % CSS]
    p.append('<h1>VmcBackend conformance report</h1>')
    p.append('<p class="sub">The upstream ibmvmc driver against vmcd, generated %s%s. Kernels: %s.</p>' % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), esc(title_note), esc(", ".join(group_label(k, d) for k, d in groups) or "none")))
    p.append('<div class="cards">')
    for v, k in (("PASS", "passed"), ("FAIL", "failed"), ("XFAIL", "xfailed (driver bugs)"), ("SKIP", "skipped")):
        p.append('<div class="card"><div class="v">%d</div><div class="k">%s %s</div></div>' % (total[v], badge(v), k))
    p.append('<div class="card"><div class="v">%d</div><div class="k">traces drawn</div></div></div>' % len(traces))
    p.append('<h2 id="contents">Contents</h2><ul>')
    for k, d in groups:
        p.append('<li><a href="#%s">%s</a></li>' % (scenario_anchor(k, d, ""), esc(group_label(k, d))))
    p.append('</ul>')

    for k, d in groups:
        gres = [(v, n, m) for v, n, m, dr in results if split_name(n)[0] == k and dr == d]
        gtr = [t for t in traces if t.kernel == k and t.driver == d]
        scen = []
        for _, n, _ in gres:
            sc = split_name(n)[1]
            if sc not in scen:
                scen.append(sc)
        for t in gtr:
            if t.scenario not in scen:
                scen.append(t.scenario)
        p.append('<h2 id="%s">%s</h2>' % (scenario_anchor(k, d, ""), esc(group_label(k, d))))

        # results
        p.append('<h3>Results by scenario</h3><table><tr><th>scenario</th><th>PASS</th><th>FAIL</th><th>XFAIL</th><th>SKIP</th><th>checks</th></tr>')
        for sc in scen:
            c = collections.Counter(v for v, n, _ in gres if split_name(n)[1] == sc)
            lines = "".join('<div>%s %s%s</div>' % (badge(v), esc(split_name(n)[2]), ('<span class="q"> %s</span>' % esc(m)) if m else "")
                            for v, n, m in gres if split_name(n)[1] == sc)
            cells = "".join('<td class="n%s">%d</td>' % ("" if c[v] else " zero", c[v]) for v in ("PASS", "FAIL", "XFAIL", "SKIP"))
            p.append('<tr><td><a href="#%s">%s</a></td>%s<td><details><summary>%d lines</summary>%s</details></td></tr>' % (
                scenario_anchor(k, d, sc), esc(sc), cells, sum(c.values()), lines or "no result lines"))
        p.append('</table>')

        # traffic
        msgs = collections.defaultdict(lambda: [0, 0])
        hcalls = collections.Counter()
        reached = collections.defaultdict(list)
        fault_recs = collections.defaultdict(list)
        for t in gtr:
            m, h, st, fr = analyse(t.records)
            for key, (a, b) in m.items():
                msgs[key][0] += a
                msgs[key][1] += b
            hcalls.update(h)
            for s in st:
                if t.scenario not in reached[s]:
                    reached[s].append(t.scenario)
            if fr:
                fault_recs[t.scenario] += fr
        p.append('<div class="cols"><div>')
        p.append('<h3>CRQ message types exercised</h3>')
        if not gtr:
            p.append('<p>No trace was recorded for this kernel (run with <code>--report</code>).</p>')
        else:
            p.append('<p class="sub">Counted over %d trace(s) (%d records). guest&rarr;hv: entries the driver sent (H_SEND_CRQ); hv&rarr;guest: entries vmcd posted.</p>' % (
                len(gtr), sum(len(t.records) for t in gtr)))
            p.append('<table><tr><th>message type</th><th>guest&rarr;hv</th><th>hv&rarr;guest</th></tr>')
            keys = [x for x in MSG_ORDER] + sorted(x for x in msgs if x not in MSG_ORDER)
            for key in keys:
                a, b = msgs.get(key, [0, 0])
                p.append('<tr><td>%s</td><td class="n%s">%d</td><td class="n%s">%d</td></tr>' % (
                    esc(key), "" if a else " zero", a, "" if b else " zero", b))
            p.append('</table><h4>Hypervisor calls and their return codes</h4><table><tr><th>hcall</th><th>rc</th><th>count</th></tr>')
            for (name, rc), n in sorted(hcalls.items()):
                p.append('<tr><td>%s</td><td>%s</td><td class="n">%d</td></tr>' % (esc(name), esc(rc), n))
            p.append('</table>')
        p.append('</div><div>')
        p.append('<h3>Adapter and session states reached</h3><table><tr><th>state</th><th>reached</th><th>in scenarios</th></tr>')
        for key, desc in STATES:
            sc = reached.get(key, [])
            p.append('<tr><td>%s</td><td class="%s">%s</td><td>%s</td></tr>' % (
                esc(desc), "yes" if sc else "no", "yes" if sc else "no", esc(", ".join(sc))))
        p.append('</table></div></div>')

        # faults and traps
        p.append('<h3>Faults injected and the driver\'s reaction</h3>')
        fsc = [sc for sc in scen if sc.startswith("faults/")]
        if not fsc:
            p.append('<p>No fault scenario ran for this kernel and driver.%s</p>' % (
                " The catalogue has %d fault files (tests/guest/faults: %s); <code>scripts/boot-test.sh faults</code> runs them." % (
                    len(fault_files), esc(", ".join(fault_files))) if fault_files else ""))
        else:
            p.append('<table><tr><th>fault</th><th>what it does</th><th>rules</th><th>driver\'s reaction (result lines)</th></tr>')
            for sc in fsc:
                name = sc[len("faults/"):]
                desc, rules = fault_files.get(name, ([], []))
                lines = "".join('<div>%s %s%s</div>' % (badge(v), esc(split_name(n)[2]), ('<span class="q"> %s</span>' % esc(m)) if m else "")
                                for v, n, m in gres if split_name(n)[1] == sc)
                recs = "".join('<div class="q">trace: %s</div>' % esc(x) for x in fault_recs.get(sc, [])[:5])
                p.append('<tr><td><a href="#%s">%s</a></td><td>%s</td><td class="q">%s</td><td>%s%s</td></tr>' % (
                    scenario_anchor(k, d, sc), esc(name), esc(" ".join(desc)) or "&mdash;", esc("\n".join(rules)), lines or "no result lines", recs))
            p.append('</table>')
        p.append('<h4>Driver traps that fired</h4>')
        xf = [(v, n, m) for v, n, m in gres if v == "XFAIL"]
        if not xf:
            p.append('<p>No driver trap fired (no XFAIL line for this kernel).</p>')
        else:
            p.append('<table><tr><th>trap</th><th>scenario</th><th>check</th><th>report</th></tr>')
            for v, n, m in xf:
                traps = sorted(set(re.findall(r"\btrap ?(\d+)", m)), key=int)
                bug = re.search(r"known driver bug ([^ ,)]+)", m)
                trap = ", ".join("trap %s" % x for x in traps) or (bug.group(1) if bug else "&mdash;")
                p.append('<tr><td>%s</td><td>%s</td><td>%s</td><td class="q">%s</td></tr>' % (
                    trap if trap == "&mdash;" else esc(trap), esc(split_name(n)[1]), esc(split_name(n)[2]), esc(m)))
            p.append('</table>')

        # diagrams
        p.append('<h3>Sequence diagrams</h3>')
        for sc in scen:
            ts = [t for t in gtr if t.scenario == sc]
            p.append('<h4 id="%s">%s / %s</h4>' % (scenario_anchor(k, d, sc), esc(k), esc(sc)))
            if not ts:
                p.append('<p>No trace of this scenario.</p>')
            for t in ts:
                svg, nrows = svg_diagram(t.records, max_rows)
                p.append('<p class="sub">%s: %s, %d records, %d rows%s</p>' % (
                    esc(t.label), esc(os.path.basename(t.path)), len(t.records), nrows, " (first %d drawn)" % max_rows if nrows > max_rows else ""))
                p.append(svg)
    p.append('</body></html>\n')
    return "\n".join(p)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="a boot-test --report directory")
    ap.add_argument("--jsonl", nargs="*", default=[], help="traces (vmcctl trace --read FILE --json) instead of --dir")
    ap.add_argument("--kernel", default="?", help="with --jsonl: the kernel label")
    ap.add_argument("--scenario", help="with --jsonl: the scenario (default: from the file name)")
    ap.add_argument("--results", help="with --jsonl: result lines")
    ap.add_argument("--faults-dir")
    ap.add_argument("--known-bugs")
    ap.add_argument("--max-rows", type=int, default=MAX_ROWS)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    results, traces = find_runs(a.dir) if a.dir and not a.results else ([], [])
    if a.results:
        results = [(v, n, m, "stock") for v, n, m in read_results(a.results)]
    for j in a.jsonl:
        stem = re.sub(r"(\.vmctrace)?(\.gz)?\.jsonl$", "", os.path.basename(j))
        sc = a.scenario or (stem[len(a.kernel) + 1:] if stem.startswith(a.kernel + "-") else stem)
        traces.append(Trace(j, a.kernel, "stock", scenario_of_stem(sc), "trace", read_records(j)))
    page = render(results, traces, read_fault_files(a.faults_dir), a.known_bugs, a.max_rows)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(page)
    print("%s: %d kernels/drivers, %d scenarios traced, %d result lines, %d bytes" % (
        a.out, page.count('<h2 id="sc-'), len(traces), len(results), len(page)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
