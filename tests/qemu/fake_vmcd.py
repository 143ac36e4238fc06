#!/usr/bin/env python3
"""fake_vmcd.py: a minimal vmc-user version 2 back-end, written from docs/protocol.md alone.

It is the second implementation of the protocol (vmcd is the first; nothing is shared with it),
used by tests/qemu/device-checks.sh and guest-checks.sh to test QEMU's spapr-vmc device. It
serves one connection at a time: the socket set-up (features, config, memory table, channel),
the submission ring, the request slot and the output ring, and plays just enough of the VMC
hypervisor side for the guest's ibmvmc driver to reach "ready": it answers the guest's init
(0xC0 01) with 0xC0 02, sends an init itself on a REG_CRQ with RECONNECT, and answers the
capabilities. It performs H_COPY_RDMA for real, between guest RAM (mapped from the memory table)
and a private buffer that stands for the remote window. It assumes a little-endian x86-64 host
(plain loads and stores in the shared channel are ordered there).

Modes (--mode) that misbehave on purpose:
  ok                 a correct back-end (default)
  bad-version        reply to GET_FEATURES with protocol version 1 in the flags
  refuse-features    answer SET_FEATURES with EINVAL, then close
  no-reply           read requests but never answer them
  channel-failed     send CHANNEL_FAILED (reason 2) right after the first REG_CRQ
  bad-oq             after the first REG_CRQ, publish an oq_prod 5000 entries ahead
  ignore-sq          never consume the submission ring (the slot is still served)

Every event is logged to stderr as one "fake-vmcd: ..." line.
"""
import argparse
import array
import errno
import fcntl
import mmap
import os
import select
import signal
import socket
import struct
import sys

HDR = struct.Struct("<III")
VERSION, F_REPLY = 2, 0x4
MAX_PAYLOAD, MAX_FDS = 4096, 8
GET_FEATURES, SET_FEATURES, GET_CONFIG, SET_MEM_TABLE, SET_CHANNEL, RESET = range(1, 7)
CHANNEL_FAILED = 32
NAMES = {1: "GET_FEATURES", 2: "SET_FEATURES", 3: "GET_CONFIG", 4: "SET_MEM_TABLE",
         5: "SET_CHANNEL", 6: "RESET"}
F_MEM_TABLE_UPDATES = 1
FDS_PER_REQUEST = {GET_FEATURES: 0, SET_FEATURES: 0, GET_CONFIG: 0, SET_CHANNEL: 4, RESET: 0}

# channel layout (section 2)
MAGIC = 0x52434D56
CH_SIZE, SQ_N, OQ_N = 0x8000, 512, 1024
O_MAGIC, O_VERSION, O_SQN, O_OQN = 0x0, 0x4, 0x8, 0xC
O_SQ_PROD, O_SQ_CONS, O_OQ_PROD, O_OQ_CONS = 0x40, 0x80, 0xC0, 0x100
O_DONE_SEQ, O_DONE_RC, O_DONE_VALUE = 0x140, 0x148, 0x150
O_SLOT, O_SQ, O_OQ = 0x1000, 0x2000, 0x4000
REG_CRQ, FREE_CRQ, COPY_RDMA, REQUEST_VMC = 1, 2, 3, 4
KINDS = {1: "REG_CRQ", 2: "FREE_CRQ", 3: "COPY_RDMA", 4: "REQUEST_VMC"}
MAX_SEGS = 254

H_SUCCESS, H_PARAMETER, H_SOURCE_PARM, H_DEST_PARM, H_REMOTE_PARM = 0, -4, -13, -14, -15
F_SEAL_SHRINK, F_SEAL_GROW = 0x2, 0x4
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)


def log(msg):
    print(f"fake-vmcd: {msg}", file=sys.stderr, flush=True)


class Closed(Exception):
    """The connection ends (peer closed it, or we close it after a protocol error)."""


def sealed(fd):
    try:
        seals = fcntl.fcntl(fd, F_GET_SEALS)
    except OSError:
        return False
    return seals & (F_SEAL_SHRINK | F_SEAL_GROW) == F_SEAL_SHRINK | F_SEAL_GROW


class Conn:
    def __init__(self, sock, args):
        self.sock, self.args = sock, args
        self.features = None
        self.regions = []          # [(gpa, size, mmap)]
        self.chan = None
        self.kick = self.call = self.done = None
        self.sq_cons = self.oq_prod = 0
        self.done_seq = 0
        self.backlog = []
        self.queue = None          # entries of the registered guest queue
        self.reg_count = 0
        self.window = bytearray()  # the remote window, grown on demand

    # --- socket -----------------------------------------------------------------------------
    def recv_exact(self, n, fds=None):
        buf = b""
        while len(buf) < n:
            if fds is not None and not buf:
                data, anc, flags, _ = self.sock.recvmsg(n, socket.CMSG_SPACE(MAX_FDS * 4))
                for level, typ, raw in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        a = array.array("i")
                        a.frombytes(raw[:len(raw) - len(raw) % 4])
                        fds.extend(a)
                if flags & socket.MSG_CTRUNC:
                    raise self.violation("more than 8 file descriptors on one frame")
            else:
                data = self.sock.recv(n - len(buf))
            if not data:
                raise Closed("the front-end closed the connection")
            buf += data
        return buf

    def violation(self, why):
        log(f"protocol violation: {why}; closing the connection")
        return Closed(why)

    def reply(self, request, payload):
        flags = VERSION | F_REPLY
        if request == GET_FEATURES and self.args.mode == "bad-version":
            flags = 1 | F_REPLY
        try:
            self.sock.sendall(HDR.pack(request, flags, len(payload)) + payload)
        except OSError as e:
            raise Closed(f"reply failed: {e}")

    def status(self, request, err):
        self.reply(request, struct.pack("<Q", err))

    def channel_failed(self, reason, text):
        t = text.encode()
        log(f"sending CHANNEL_FAILED reason {reason}: {text}")
        try:
            self.sock.sendall(HDR.pack(CHANNEL_FAILED, VERSION, 8 + len(t)) + struct.pack("<II", reason, len(t)) + t)
        except OSError:
            pass
        raise Closed("channel failed")

    def frame(self):
        fds = []
        try:
            request, flags, size = HDR.unpack(self.recv_exact(HDR.size, fds))
            if size > MAX_PAYLOAD:
                raise self.violation(f"payload of {size} bytes")
            payload = self.recv_exact(size) if size else b""
            self.request(request, flags, payload, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def request(self, request, flags, payload, fds):
        name = NAMES.get(request, f"#{request}")
        log(f"request {name} flags 0x{flags:x} size {len(payload)} fds {len(fds)}")
        if flags != VERSION:
            raise self.violation(f"flags 0x{flags:x} (version {flags & 3}), expected 0x{VERSION:x}")
        if self.args.mode == "no-reply":
            return
        if request == SET_MEM_TABLE:
            n = struct.unpack_from("<I", payload)[0] if len(payload) >= 8 else 0
            if not 1 <= n <= 8 or len(payload) != 8 + 24 * n or len(fds) != n:
                raise self.violation(f"SET_MEM_TABLE of {len(payload)} bytes, {len(fds)} fds")
        elif request not in FDS_PER_REQUEST:
            raise self.violation(f"unknown request {request}")
        elif len(fds) != FDS_PER_REQUEST[request]:
            raise self.violation(f"{name} with {len(fds)} fds")
        want = {SET_FEATURES: 8, SET_CHANNEL: 16}.get(request, 0)
        if request != SET_MEM_TABLE and len(payload) != want:
            raise self.violation(f"{name} payload of {len(payload)} bytes")

        if request == GET_FEATURES:
            self.reply(request, struct.pack("<Q", F_MEM_TABLE_UPDATES))
        elif request == SET_FEATURES:
            bits = struct.unpack("<Q", payload)[0]
            if self.args.mode == "refuse-features" or bits & ~F_MEM_TABLE_UPDATES:
                self.status(request, errno.EINVAL)
                raise Closed(f"features 0x{bits:x} refused")
            self.features = bits
            log(f"features 0x{bits:x}")
            self.status(request, 0)
        elif request == GET_CONFIG:
            self.reply(request, struct.pack("<IIHBBIQQ", self.args.drc_index, self.args.max_mtu,
                                            self.args.pool_size, self.args.max_hmcs, 0,
                                            self.args.max_segments, self.args.remote_window_size, 0))
        elif request == SET_MEM_TABLE:
            self.mem_table(payload, fds)
        elif request == SET_CHANNEL:
            self.set_channel(payload, fds)
        elif request == RESET:
            log("RESET: the queue and everything for it dropped")
            self.queue = None
            self.backlog = []
            self.status(request, 0)

    def mem_table(self, payload, fds):
        if self.chan is not None and not (self.features or 0) & F_MEM_TABLE_UPDATES:
            raise self.violation("SET_MEM_TABLE after SET_CHANNEL without MEM_TABLE_UPDATES")
        n = struct.unpack_from("<I", payload)[0]
        regions, last = [], None
        for i in range(n):
            gpa, size, off = struct.unpack_from("<QQQ", payload, 8 + 24 * i)
            if size == 0 or size % 4096 or off % 4096 or gpa + size > 1 << 64:
                raise self.violation(f"region {i}: gpa 0x{gpa:x} size 0x{size:x} offset 0x{off:x}")
            if not sealed(fds[i]):
                self.status(SET_MEM_TABLE, errno.EINVAL)
                raise self.violation(f"region {i}: fd is not a memfd sealed against shrink and grow")
            for g, s, _ in regions:
                if gpa < g + s and g < gpa + size:
                    raise self.violation(f"region {i} overlaps another")
            try:
                m = mmap.mmap(fds[i], size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=off)
            except OSError as e:
                self.status(SET_MEM_TABLE, e.errno or errno.EINVAL)
                raise Closed(f"cannot map region {i}: {e}")
            log(f"region {i}: gpa 0x{gpa:x} size 0x{size:x} offset 0x{off:x} sealed")
            regions.append((gpa, size, m))
        self.regions = regions
        self.status(SET_MEM_TABLE, 0)

    def set_channel(self, payload, fds):
        if self.chan is not None:
            raise self.violation("second SET_CHANNEL")
        size, sqn, oqn, _ = struct.unpack("<IIII", payload)
        if size < CH_SIZE or sqn != SQ_N or oqn != OQ_N or os.fstat(fds[0]).st_size < size:
            raise self.violation(f"channel size 0x{size:x} sq {sqn} oq {oqn}")
        if not sealed(fds[0]):
            self.status(SET_CHANNEL, errno.EINVAL)
            raise self.violation("channel fd is not sealed")
        chan = mmap.mmap(fds[0], CH_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, version, csq, coq = struct.unpack_from("<IIII", chan, 0)
        if (magic, version, csq, coq) != (MAGIC, VERSION, SQ_N, OQ_N):
            raise self.violation(f"channel header {magic:#x} v{version} sq {csq} oq {coq}")
        self.chan = chan
        self.kick, self.call, self.done = (os.dup(fd) for fd in fds[1:4])
        self.sq_cons = self.u32(O_SQ_CONS)
        self.oq_prod = self.u32(O_OQ_PROD)
        self.done_seq = self.u32(O_DONE_SEQ)
        log(f"channel size 0x{size:x} sq {sqn} oq {oqn}")
        self.status(SET_CHANNEL, 0)

    # --- shared memory ----------------------------------------------------------------------
    def u32(self, off):
        return struct.unpack_from("<I", self.chan, off)[0]

    def set_u32(self, off, v):
        struct.pack_into("<I", self.chan, off, v & 0xFFFFFFFF)

    def put(self, entry):
        self.backlog.append(entry)
        self.flush()

    def flush(self):
        if self.chan is None or not self.backlog:
            return
        cons = self.u32(O_OQ_CONS)
        if (self.oq_prod - cons) & 0xFFFFFFFF > OQ_N:
            self.channel_failed(3, f"oq_cons {cons} is ahead of oq_prod {self.oq_prod}")
        moved = 0
        while self.backlog and (self.oq_prod - cons) & 0xFFFFFFFF < OQ_N:
            e = self.backlog.pop(0)
            o = O_OQ + (self.oq_prod % OQ_N) * 16
            self.chan[o:o + 16] = e
            self.oq_prod = (self.oq_prod + 1) & 0xFFFFFFFF
            self.set_u32(O_OQ_PROD, self.oq_prod)
            log(f"oq put {e[:8].hex()} {e[8:].hex()}")
            moved += 1
        if moved:
            os.eventfd_write(self.call, 1)
        if len(self.backlog) > 4096:
            self.channel_failed(1, "output backlog overflow")

    def ring(self):
        if self.args.mode == "ignore-sq":
            return
        prod = self.u32(O_SQ_PROD)
        n = (prod - self.sq_cons) & 0xFFFFFFFF
        if n > SQ_N:
            self.channel_failed(3, f"sq_prod {prod} is {n} entries ahead of sq_cons {self.sq_cons}")
        while self.sq_cons != prod:
            o = O_SQ + (self.sq_cons % SQ_N) * 16
            self.submission(bytes(self.chan[o:o + 16]))
            self.sq_cons = (self.sq_cons + 1) & 0xFFFFFFFF
            self.set_u32(O_SQ_CONS, self.sq_cons)

    def submission(self, e):
        log(f"sq entry {e[:8].hex()} {e[8:].hex()}")
        if self.queue is None:
            log("  ...without a registered queue: ignored")
        elif e[0] == 0xC0 and e[1] == 0x01:
            self.put(bytes([0xC0, 0x02]) + bytes(14))
        elif e[0] == 0x80 and e[1] == 0x01:      # CAP -> CAP_RESP
            self.put(struct.pack(">BBBBBBHIHH", 0x80, 0x81, 0, 0, 0, self.args.max_hmcs,
                                 self.args.pool_size, self.args.max_mtu, 0, 0x0101))

    def slot(self):
        seq = self.u32(O_SLOT)
        if seq == self.done_seq:
            return
        if seq != (self.done_seq + 1) & 0xFFFFFFFF:
            self.channel_failed(3, f"req_seq {seq} after {self.done_seq}")
        kind, a0, a1, length, rioba = struct.unpack_from("<IIIQQ", self.chan, O_SLOT + 4)
        rc, value = H_SUCCESS, 0
        name = KINDS.get(kind, f"#{kind}")
        if kind == REG_CRQ:
            value = self.oq_prod
            self.queue = a0
            self.backlog = []
            log(f"slot REG_CRQ entries {a0} flags 0x{a1:x} -> oq position {value}")
            if a1 & 1:
                self.put(bytes([0xC0, 0x01]) + bytes(14))
            self.reg_count += 1
        elif kind == FREE_CRQ:
            self.queue = None
            self.backlog = []
            value = self.oq_prod
            log(f"slot FREE_CRQ -> oq position {value}")
        elif kind == COPY_RDMA:
            rc = self.copy_rdma(a0, a1, length, rioba)
        elif kind == REQUEST_VMC:
            value = self.args.drc_index
            log(f"slot REQUEST_VMC -> 0x{value:x}")
        else:
            self.channel_failed(3, f"unknown slot kind {kind}")
        struct.pack_into("<qQ", self.chan, O_DONE_RC, rc, value)
        self.done_seq = seq
        self.set_u32(O_DONE_SEQ, seq)
        os.eventfd_write(self.done, 1)
        if name == "REG_CRQ" and self.reg_count == 1:
            if self.args.mode == "channel-failed":
                self.channel_failed(2, "fake-vmcd was told to fail (--mode channel-failed)")
            if self.args.mode == "bad-oq":
                log("publishing a bad oq_prod (--mode bad-oq)")
                self.set_u32(O_OQ_PROD, self.oq_prod + 5000)
                os.eventfd_write(self.call, 1)

    def guest(self, gpa, length):
        for g, s, m in self.regions:
            if g <= gpa and gpa + length <= g + s:
                return m, gpa - g
        return None, 0

    def copy_rdma(self, direction, nseg, length, rioba):
        if direction > 1 or nseg > MAX_SEGS:
            self.channel_failed(3, f"COPY_RDMA direction {direction} nseg {nseg}")
        segs = [struct.unpack_from("<QQ", self.chan, O_SLOT + 0x20 + 16 * i) for i in range(nseg)]
        if sum(s[1] for s in segs) != length:
            self.channel_failed(3, f"COPY_RDMA segments add up to {sum(s[1] for s in segs)}, not {length}")
        log(f"slot COPY_RDMA direction {direction} nseg {nseg} length {length} remote 0x{rioba:x}")
        if rioba + length > self.args.remote_window_size:
            return H_REMOTE_PARM
        if len(self.window) < rioba + length:
            self.window.extend(bytes(rioba + length - len(self.window)))
        r = rioba
        for gpa, n in segs:
            m, off = self.guest(gpa, n)
            if m is None:
                return H_SOURCE_PARM if direction == 0 else H_DEST_PARM
            if direction == 0:
                self.window[r:r + n] = m[off:off + n]
            else:
                m[off:off + n] = bytes(self.window[r:r + n])
            r += n
        return H_SUCCESS

    # --- event loop (section 1: socket frames first, then the ring, then the slot) ----------
    def serve(self):
        poll = select.poll()
        poll.register(self.sock, select.POLLIN)
        kick_registered = False
        while True:
            if self.chan is not None and not kick_registered:
                poll.register(self.kick, select.POLLIN)
                kick_registered = True
            poll.poll(10 if self.backlog else None)
            while select.select([self.sock], [], [], 0)[0]:
                self.frame()
            if self.chan is not None:
                try:
                    os.eventfd_read(self.kick)
                except BlockingIOError:
                    pass
                self.ring()
                self.slot()
                self.flush()

    def close(self):
        for fd in (self.kick, self.call, self.done):
            if fd is not None:
                os.close(fd)
        self.sock.close()


def main():
    num = lambda v: int(v, 0)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--mode", default="ok",
                   choices=["ok", "bad-version", "refuse-features", "no-reply", "channel-failed", "bad-oq",
                            "ignore-sq"])
    p.add_argument("--remote-window-size", type=num, default=0x2000000)
    p.add_argument("--drc-index", type=num, default=0x81000001)
    p.add_argument("--max-mtu", type=num, default=4096)
    p.add_argument("--pool-size", type=num, default=32)
    p.add_argument("--max-hmcs", type=num, default=1)
    p.add_argument("--max-segments", type=num, default=MAX_SEGS)
    args = p.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(16)
    log(f"listening on {args.socket} (mode {args.mode})")
    n = 0
    while True:
        sock, _ = srv.accept()
        n += 1
        log(f"connection {n}")
        conn = Conn(sock, args)
        try:
            conn.serve()
        except Closed as e:
            log(f"connection {n} closed: {e}")
        except OSError as e:
            log(f"connection {n} failed: {e}")
        finally:
            conn.close()


if __name__ == "__main__":
    main()
