#!/usr/bin/env python3
"""The service manager's side of sd_notify, for tests that run without systemd as PID 1.

  sdnotify.py listen ADDR SECONDS
      Bind a datagram socket at ADDR (a path, or @name for an abstract socket), print "listening",
      then one line per received datagram (its assignments joined by ';'). Ends after a datagram
      with STOPPING=1, or after SECONDS (exit 1).
  sdnotify.py start-time RUNS SOCKET -- CMD...
      Run CMD RUNS times with NOTIFY_SOCKET set, timing exec to READY=1 (and checking SOCKET exists
      then); read the process's RSS once it is idle (1 s after READY), SIGTERM it, expect STOPPING=1
      and exit 0. Prints "start-ms median=.. min=.. max=.. runs=N" and "idle-rss-kib median=..".
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def bind(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
    return s


def receive(s, deadline):
    s.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        return s.recv(4096).decode()
    except socket.timeout:
        return None


def listen(addr, seconds):
    s = bind(addr)
    print("listening", flush=True)
    deadline = time.monotonic() + seconds
    while True:
        msg = receive(s, deadline)
        if msg is None:
            return 1
        print(";".join(msg.split("\n")), flush=True)
        if "STOPPING=1" in msg.split("\n"):
            return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def start_time(runs, sock_path, cmd):
    addr = f"@vmcd-start-{os.getpid()}"
    s = bind(addr)
    env = dict(os.environ, NOTIFY_SOCKET=addr)
    times, rss = [], []
    for i in range(runs):
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        msg = receive(s, time.monotonic() + 10)
        t1 = time.perf_counter()
        if msg is None or "READY=1" not in msg.split("\n"):
            p.kill()
            print(f"run {i}: no READY=1 within 10 s (got {msg!r})", file=sys.stderr)
            return 1
        if not os.path.exists(sock_path):
            p.kill()
            print(f"run {i}: READY=1 came before {sock_path} existed", file=sys.stderr)
            return 1
        times.append((t1 - t0) * 1000)
        time.sleep(1.0)   # idle: nothing connected; what the process holds once started
        rss.append(rss_kib(p.pid))
        p.send_signal(signal.SIGTERM)
        msg = receive(s, time.monotonic() + 10)
        if msg is None or "STOPPING=1" not in msg.split("\n") or p.wait(10) != 0:
            print(f"run {i}: no clean stop after SIGTERM (got {msg!r}, exit {p.poll()})", file=sys.stderr)
            return 1
    print(f"start-ms median={statistics.median(times):.1f} min={min(times):.1f} max={max(times):.1f} runs={runs}")
    print(f"idle-rss-kib median={statistics.median(rss):.0f}")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "listen":
        return listen(argv[2], float(argv[3]))
    if len(argv) > 5 and argv[1] == "start-time" and argv[4] == "--":
        return start_time(int(argv[2]), argv[3], argv[5:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
