#!/usr/bin/env python3
"""A tiny vmc-user back-end (docs/protocol.md) for testing QEMU's spapr-vmc without vmcd.

It speaks the socket protocol, maps guest RAM, and plays just enough of the VMC hypervisor
side for the guest's ibmvmc driver to reach state "ready": it answers the guest's init
(0xC0 01) with an init response, sends an init itself on a RECONNECT registration, and
answers capabilities.  It sends no ADD_BUF and performs no RDMA copies (COPY_RDMA is
acknowledged).  Misbehaving modes exercise QEMU's realize errors:

  --mode ok               normal back-end
  --mode refuse-version   close every connection on its first frame (wrong protocol version)
  --mode bad-version      reply to GET_FEATURES with protocol version 2 in the flags
  --mode refuse-features  answer SET_FEATURES with EINVAL and close

Each connection is served by its own thread; every event is logged to stderr as "fake-vmcd: ...".
"""
import argparse
import array
import mmap
import os
import signal
import socket
import struct
import sys
import threading

HDR = struct.Struct("<III")
VERSION, F_REPLY, F_NEED_REPLY = 1, 0x4, 0x8
(GET_FEATURES, SET_FEATURES, GET_CONFIG, SET_MEM_TABLE, SET_CALL_FD, REG_CRQ, FREE_CRQ,
 SEND_CRQ, COPY_RDMA, REQUEST_VMC, RESET) = range(1, 12)
NAMES = {v: k for k, v in dict(GET_FEATURES=1, SET_FEATURES=2, GET_CONFIG=3, SET_MEM_TABLE=4,
                                SET_CALL_FD=5, REG_CRQ=6, FREE_CRQ=7, SEND_CRQ=8, COPY_RDMA=9,
                                REQUEST_VMC=10, RESET=11).items()}
H_SUCCESS, H_PARAMETER = 0, -4


def log(msg):
    print(f"fake-vmcd: {msg}", file=sys.stderr, flush=True)


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock, args):
        self.sock, self.args = sock, args
        self.regions = []          # (gpa, size, mmap)
        self.callfd = None
        self.crq = None            # dict(entries, tail, segs, state)
        self.requests = 0

    # --- transport -----------------------------------------------------------------------
    def recv_frame(self):
        fds = array.array("i")
        msg, anc, flags, _ = self.sock.recvmsg(HDR.size, socket.CMSG_SPACE(8 * fds.itemsize))
        if not msg:
            raise Closed()
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        while len(msg) < HDR.size:
            more = self.sock.recv(HDR.size - len(msg))
            if not more:
                raise Closed()
            msg += more
        req, fl, size = HDR.unpack(msg)
        payload = b""
        while len(payload) < size:
            more = self.sock.recv(size - len(payload))
            if not more:
                raise Closed()
            payload += more
        return req, fl, payload, list(fds)

    def reply(self, req, payload):
        self.sock.sendall(HDR.pack(req, VERSION | F_REPLY, len(payload)) + payload)

    def reply_u64(self, req, value):
        self.reply(req, struct.pack("<q", value))

    # --- guest memory --------------------------------------------------------------------
    def gmem(self, gpa, n):
        for base, size, m in self.regions:
            if base <= gpa and gpa + n <= base + size:
                return m, gpa - base
        raise ValueError(f"guest access 0x{gpa:x}+{n} outside the memory table")

    def crq_slot(self, index):
        off = index * 16
        for gpa, ln in self.crq["segs"]:
            if off < ln:
                return gpa + off
            off -= ln
        raise ValueError("slot outside the queue")

    def push(self, entry):
        crq = self.crq
        if crq is None:
            log("no queue registered, entry dropped")
            return
        m, o = self.gmem(self.crq_slot(crq["tail"]), 16)
        if m[o] != 0:
            log(f"queue full at slot {crq['tail']}, entry dropped")
            return
        m[o + 1:o + 16] = entry[1:16]
        m[o] = entry[0]
        crq["tail"] = (crq["tail"] + 1) % crq["entries"]
        crq["state"][0:4] = struct.pack("<I", crq["tail"])
        if self.callfd is not None:
            os.write(self.callfd, struct.pack("<Q", 1))
        log(f"wrote entry {entry.hex()} tail now {crq['tail']}")

    # --- requests ------------------------------------------------------------------------
    def handle(self, req, fl, p, fds):
        a = self.args
        name = NAMES.get(req, f"#{req}")
        log(f"request {name} flags 0x{fl:x} size {len(p)} fds {len(fds)}")
        self.requests += 1
        if a.mode == "refuse-version" or (fl & 3) != VERSION:
            log("refusing: wrong protocol version; closing")
            raise Closed()
        if req == GET_FEATURES:
            if a.mode == "bad-version":
                self.sock.sendall(HDR.pack(req, 2 | F_REPLY, 8) + struct.pack("<Q", 0))
                return
            self.reply_u64(req, 0)
        elif req == SET_FEATURES:
            (feat,) = struct.unpack("<Q", p)
            if a.mode == "refuse-features" or feat:
                self.reply_u64(req, 22)  # EINVAL
                raise Closed()
            self.reply_u64(req, 0)
        elif req == GET_CONFIG:
            self.reply(req, struct.pack("<IIHBBIQQ", a.drc_index, a.max_mtu, a.pool_size,
                                        a.max_hmcs, 0, 254, a.remote_window_size, 0))
        elif req == SET_MEM_TABLE:
            n, _ = struct.unpack_from("<II", p)
            for m in self.regions:
                m[2].close()
            self.regions = []
            for i in range(n):
                gpa, size, off = struct.unpack_from("<QQQ", p, 8 + 24 * i)
                self.regions.append((gpa, size, mmap.mmap(fds[i], size, mmap.MAP_SHARED,
                                                          mmap.PROT_READ | mmap.PROT_WRITE,
                                                          offset=off)))
                log(f"region {i}: gpa 0x{gpa:x} size 0x{size:x}")
            for fd in fds:
                os.close(fd)
            self.reply_u64(req, 0)
        elif req == SET_CALL_FD:
            if self.callfd is not None:
                os.close(self.callfd)
            self.callfd = fds[0]
            if fl & F_NEED_REPLY:
                self.reply_u64(req, 0)
        elif req == REG_CRQ:
            entries, tail, flags, nseg = struct.unpack_from("<IIII", p)
            segs = [struct.unpack_from("<QQ", p, 16 + 16 * i) for i in range(nseg)]
            state = mmap.mmap(fds[0], 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.close(fds[0])
            self.crq = dict(entries=entries, tail=tail, segs=segs, state=state)
            log(f"REG_CRQ entries {entries} tail {tail} flags {flags} segs "
                + " ".join(f"0x{g:x}+0x{ln:x}" for g, ln in segs))
            self.reply_u64(req, H_SUCCESS)
            if flags & 1:
                self.push(bytes([0xC0, 0x01]) + bytes(14))
        elif req == FREE_CRQ:
            self.crq = None
            self.reply_u64(req, H_SUCCESS)
        elif req == SEND_CRQ:
            e = p
            log(f"guest sent {e.hex()}")
            self.reply_u64(req, H_SUCCESS)
            if e[0] == 0xC0 and e[1] == 0x01:
                self.push(bytes([0xC0, 0x02]) + bytes(14))
            elif e[0] == 0x80 and e[1] == 0x01:      # capabilities
                resp = bytearray(16)
                resp[0], resp[1] = 0x80, 0x81
                resp[5] = a.max_hmcs
                struct.pack_into(">HIHH", resp, 6, a.pool_size, a.max_mtu, 4096, 0x0101)
                self.push(bytes(resp))
        elif req == COPY_RDMA:
            d, nseg, length, rioba = struct.unpack_from("<IIQQ", p)
            log(f"COPY_RDMA dir {d} len {length} remote 0x{rioba:x} nseg {nseg}")
            self.reply_u64(req, H_SUCCESS)
        elif req == REQUEST_VMC:
            self.reply(req, struct.pack("<qQ", H_SUCCESS, a.drc_index))
        elif req == RESET:
            self.crq = None
            self.reply_u64(req, 0)
        else:
            log("unknown request; closing")
            raise Closed()

    def run(self):
        try:
            while True:
                self.handle(*self.recv_frame())
        except (Closed, ConnectionError):
            log("connection closed")
        finally:
            self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--mode", default="ok",
                    choices=["ok", "refuse-version", "bad-version", "refuse-features"])
    ap.add_argument("--drc-index", type=lambda x: int(x, 0), default=0x81000001)
    ap.add_argument("--max-mtu", type=int, default=4096)
    ap.add_argument("--pool-size", type=int, default=32)
    ap.add_argument("--max-hmcs", type=int, default=1)
    ap.add_argument("--remote-window-size", type=lambda x: int(x, 0), default=0x4000000)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.unlink(a.socket)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.socket)
    srv.listen(4)
    log(f"listening on {a.socket} (mode {a.mode})")
    while True:
        c, _ = srv.accept()
        log("connection")
        threading.Thread(target=Conn(c, a).run, daemon=True).start()


if __name__ == "__main__":
    main()
