#!/usr/bin/env python3
"""Conformance report of scripts/boot-test.sh --report DIR: DIR/report.html, self-contained.

Reads every run recorded under DIR/runs/<kernel>-<driver>/ (results: the PASS/FAIL/XFAIL lines;
traces/*.txt: `vmcctl trace --read` of each scenario's CRQ traffic; consoles/*.vmcd.log) and
writes one section per kernel and driver: the CRQ message types and hypercalls exercised in each
direction, the adapter states the handshake went through, the faults injected with the driver's
reaction, the traps that fired, and per scenario an inline-SVG sequence diagram of its traffic.
"""
import html, os, re, sys
from collections import Counter, OrderedDict

DIR = sys.argv[1]
runs = sorted(d for d in os.listdir(os.path.join(DIR, "runs")) if os.path.isdir(os.path.join(DIR, "runs", d)))
esc = html.escape

LINE = re.compile(r"^\s*([0-9.]+)\s+(\S+)\s+(guest>|<hv|hv|ctl|hmc\d[<>])\s+(.*)$")
HCALL = ("H_REG_CRQ", "H_FREE_CRQ", "H_COPY_RDMA", "H_REQUEST_VMC", "H_SEND_CRQ")


def events(path):
    """(time, direction, kind, text) per trace line; direction 'g2h', 'h2g' or 'ctl'."""
    out = []
    for l in open(path, errors="replace"):
        m = LINE.match(l)
        if not m:
            continue
        t, _vm, d, text = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        text = re.sub(r"\s+\[[0-9A-F]{32}\]$", "", text)
        kind = text.split()[0] if text else ""
        if d == "guest>":
            out.append((t, "g2h", kind, text))
        elif d == "<hv":
            out.append((t, "h2g", "=" + text.split()[1].rstrip(",;") if kind == "=" and len(text.split()) > 1 else kind, text))
        elif d == "ctl" and ("CHANNEL_FAILED" in text or "fault" in text or "disconnected" in text or "connected" in text):
            out.append((t, "ctl", "ctl", text))
    return out


def states(evs):
    """Adapter states the handshake went through, in order, as the trace shows them."""
    seq, last = [], None
    for _t, d, k, _x in evs:
        s = {"H_REG_CRQ": "registered", "INIT": "crqinit", "INIT_RESP": "crqinit", "CAP": "capabilities",
             "CAP_RESP": "ready", "OPEN": "hmc opening", "OPEN_RESP": "hmc ready", "CLOSE": "hmc closing",
             "CLOSE_RESP": "hmc free", "H_FREE_CRQ": "queue freed"}.get(k)
        if d == "ctl" and "CHANNEL_FAILED" in _x:
            s = "transport event"
        if s and s != last:
            seq.append(s)
            last = s
    return seq


def svg(evs, limit=70):
    """A sequence diagram: guest and hypervisor lifelines, one arrow per message or hypercall;
    runs of the same message collapse into one arrow marked xN."""
    rows = []
    for e in evs:
        if e[1] == "h2g" and e[2].startswith("="):
            if rows and rows[-1][1] == "g2h" and rows[-1][2] in HCALL:      # an hcall's return code: on its arrow
                rows[-1] = rows[-1][:3] + (rows[-1][3] + " " + e[3], rows[-1][4])
            continue
        if rows and rows[-1][1] == e[1] and rows[-1][2] == e[2] and e[2] not in ("ctl",):
            rows[-1] = rows[-1][:4] + (rows[-1][4] + 1,)
        else:
            rows.append(e + (1,))
    more = len(rows) - limit
    rows = rows[:limit]
    W, top, step = 760, 40, 22
    H = top + step * (len(rows) + (1 if more > 0 else 0)) + 20
    gx, hx = 150, 610
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">',
         '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
         f'<text x="{gx}" y="18" text-anchor="middle" font-weight="bold">guest (ibmvmc)</text>',
         f'<text x="{hx}" y="18" text-anchor="middle" font-weight="bold">hypervisor (vmcd)</text>',
         f'<line x1="{gx}" y1="26" x2="{gx}" y2="{H - 10}" stroke="#888" stroke-dasharray="4 3"/>',
         f'<line x1="{hx}" y1="26" x2="{hx}" y2="{H - 10}" stroke="#888" stroke-dasharray="4 3"/>']
    for i, (t, d, k, text, n) in enumerate(rows):
        y = top + i * step
        label = text if len(text) <= 62 else text[:60] + "…"
        if n > 1:
            label = f"{k} ×{n}"
        p.append(f'<text x="6" y="{y + 4}" font-size="10" fill="#777">{t:.3f}</text>')
        if d == "ctl":
            p.append(f'<rect x="{gx}" y="{y - 9}" width="{hx - gx}" height="16" fill="#fde2e2" stroke="#c33"/>')
            p.append(f'<text x="{(gx + hx) // 2}" y="{y + 3}" text-anchor="middle" font-size="11" fill="#900">{esc(label)}</text>')
            continue
        x1, x2, colour = (gx, hx, "#1f5fa8") if d == "g2h" else (hx, gx, "#2a7a2a")
        if k in HCALL:
            colour = "#8a4b00"
        p.append(f'<line x1="{x1}" y1="{y}" x2="{x2 + (-8 if x2 > x1 else 8)}" y2="{y}" stroke="{colour}" stroke-width="1.5" marker-end="url(#a)"/>')
        p.append(f'<text x="{(gx + hx) // 2}" y="{y - 3}" text-anchor="middle" font-size="11" fill="{colour}">{esc(label)}</text>')
    if more > 0:
        p.append(f'<text x="{(gx + hx) // 2}" y="{top + len(rows) * step}" text-anchor="middle" font-size="11" fill="#555">… {more} more (the whole trace: traces/ in the report directory)</text>')
    p.append("</svg>")
    return "\n".join(p)


def results(path):
    out = []
    for l in open(path, errors="replace"):
        m = re.match(r"^(PASS|FAIL|XFAIL|SKIP): (\S+?)(?:: (.*))?$", l.rstrip("\n"))
        if m:
            out.append((m.group(1), m.group(2), m.group(3) or ""))
    return out


css = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{font-size:24px}h2{border-bottom:2px solid #446;padding-top:12px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 7px;font-size:13px;vertical-align:top;text-align:left}
th{background:#eef}.PASS{background:#e3f6e3}.XFAIL{background:#fff3cd}.FAIL{background:#f8d7da}code{font-size:12px}
details{margin:6px 0}summary{cursor:pointer;font-weight:bold}.n{text-align:right}"""
out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>VMC conformance report</title><style>{css}</style></head><body>",
       "<h1>VMC conformance report: the upstream ibmvmc driver against vmcd</h1>"]
tot = Counter()
allres = {}
for r in runs:
    allres[r] = results(os.path.join(DIR, "runs", r, "results"))
    tot.update(v for v, _, _ in allres[r])
out.append(f"<p id='summary'>Runs: {', '.join(esc(r) for r in runs)}. Checks: {tot['PASS']} passed, {tot['FAIL']} failed, "
           f"{tot['XFAIL']} xfailed (known bugs of the upstream driver), {tot['SKIP']} skipped. JUnit XML: <code>junit-*.xml</code> next to this file.</p>")
out.append("<table><tr><th>kernel / driver</th><th>scenario checks</th><th>PASS</th><th>XFAIL</th><th>FAIL</th></tr>")
for r in runs:
    c = Counter(v for v, _, _ in allres[r])
    out.append(f"<tr><td>{esc(r)}</td><td class=n>{len(allres[r])}</td><td class=n>{c['PASS']}</td><td class=n>{c['XFAIL']}</td><td class=n>{c['FAIL']}</td></tr>")
out.append("</table>")
for r in runs:
    rd = os.path.join(DIR, "runs", r)
    res = allres[r]
    tdir = os.path.join(rd, "traces")
    traces = sorted(f for f in os.listdir(tdir) if f.endswith(".txt")) if os.path.isdir(tdir) else []
    evs = {f[:-4]: events(os.path.join(tdir, f)) for f in traces}
    out.append(f"<h2 id='run-{esc(r)}'>{esc(r)}</h2>")
    # message types per direction
    g2h, h2g = Counter(), Counter()
    for e in evs.values():
        for _t, d, k, _x in e:
            (g2h if d == "g2h" else h2g if d == "h2g" and not k.startswith("=") else Counter())[k] += 1
    rcs = Counter(k[1:] for e in evs.values() for _t, d, k, _x in e if d == "h2g" and k.startswith("="))
    out.append("<h3>CRQ message types and hypercalls exercised</h3><table><tr><th>guest → hypervisor</th><th class=n>count</th><th>hypervisor → guest</th><th class=n>count</th></tr>")
    a, b = g2h.most_common(), h2g.most_common() + [(f"hcall rc {k}", v) for k, v in rcs.most_common()]
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else ("", "")
        y = b[i] if i < len(b) else ("", "")
        out.append(f"<tr><td>{esc(str(x[0]))}</td><td class=n>{x[1]}</td><td>{esc(str(y[0]))}</td><td class=n>{y[1]}</td></tr>")
    out.append("</table>")
    st = Counter(s for e in evs.values() for s in set(states(e)))
    out.append("<h3>Adapter and HMC states reached</h3><p>" + ", ".join(f"{esc(s)} ({n} scenarios)" for s, n in st.most_common()) + "</p>")
    # faults
    by = OrderedDict()
    for v, name, detail in res:
        parts = name.split("/")
        if len(parts) >= 4 and parts[1] == "faults":
            by.setdefault(parts[2], {})[parts[3]] = (v, detail)
    out.append("<h3>Faults injected and the driver's reaction</h3><table><tr><th>fault</th><th>injected (vmcd)</th><th>reaction</th><th>kernel (SLUB)</th><th>recovered</th></tr>")
    traps = Counter()
    for f, checks in by.items():
        inj = checks.get("injected", ("", ""))[1].replace("vmcd: ", "")
        rv, rdet = checks.get("reaction", ("", ""))
        kv, kdet = checks.get("kernel-clean", ("", ""))
        cv, cdet = checks.get("recovered", ("", ""))
        for txt in (rdet, kdet):
            for t in re.findall(r"\btrap ?(\d+)", txt):
                traps[f"trap {t}"] += 1
        if not rv:
            rv, rdet = kv, "vmctest was ended by the kernel report in the next column"
        out.append(f"<tr><td><b>{esc(f)}</b></td><td>{esc(inj)}</td><td class='{rv}'>{esc(rv)}: {esc(rdet)}</td>"
                   f"<td class='{kv}'>{esc(kv)}{': ' + esc(kdet) if kdet else ''}</td><td class='{cv}'>{esc(cv) + (': ' + esc(cdet) if cdet else '') if cv else '—'}</td></tr>")
    out.append("</table>")
    out.append("<h3>Traps fired</h3><p>" + (", ".join(f"{esc(t)} ({n}×)" for t, n in sorted(traps.items())) or "none: no known driver bug was reached") + "</p>")
    other = [(v, n, d) for v, n, d in res if "/faults/" not in n]
    if other:
        out.append("<h3>Other scenarios</h3><table><tr><th>check</th><th>result</th></tr>")
        for v, n, d in other:
            out.append(f"<tr><td>{esc(n)}</td><td class='{v}'>{esc(v)}{': ' + esc(d) if d else ''}</td></tr>")
        out.append("</table>")
    out.append("<h3>Sequence diagrams of each scenario's CRQ traffic</h3>")
    for i, (name, e) in enumerate(evs.items()):
        out.append(f"<details class='seq'{' open' if 'uaf-after-close' in name or (i == 0 and not any('uaf-after-close' in n for n in evs)) else ''}><summary>{esc(name)} ({len(e)} events)</summary>{svg(e)}</details>")
out.append("</body></html>")
open(os.path.join(DIR, "report.html"), "w").write("\n".join(out))
print(f"report: {os.path.join(DIR, 'report.html')} ({len(runs)} runs)")
