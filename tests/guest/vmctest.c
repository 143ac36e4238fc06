/*
 * vmctest: checks the upstream ibmvmc driver (/dev/ibmvmc) against vmcd from inside the guest.
 * One line per check:  VMCTEST PASS <name> [detail]  |  VMCTEST FAIL <name> <reason>
 *                      |  VMCTEST XFAIL <name> <reason>  (a bug of the driver, reproduced; quoted)
 * and a final         VMCTEST SUMMARY passed=N failed=M   (unless --no-summary).
 *
 *   vmctest basic   [--drc 0xN] [--mtu N]   query, requestvmc, sethmcid, router, echo sizes, errors, reopen
 *   vmctest burst   [--mtu N] [--count N]   pipelined echoes, no loss or reordering
 *   vmctest twohmc  [--mtu N]               two sessions from two processes (module max_hmcs=2)
 *   vmctest query   [--drc 0xN]             the adapter reaches ready and reports vmcd's DRC index
 *   vmctest restart [--mtu N] [--closed-session]
 *                                           session, then wait for vmcd to restart, then a new session;
 *                                           --closed-session first leaves a second HMC's session closed
 *                                           (module max_hmcs=2): the driver's trap 3 then shows
 *   vmctest bench   [--mtu N] [--count N]   echo rate and round trip for 32-byte and MTU messages
 *   vmctest watch   [--count N]             every 0.2 s one QUERY and one REQUESTVMC (VMCTEST WATCH lines):
 *                                           the host starts, stops and restarts the back-end meanwhile
 *   vmctest stall   [--count ROUNDS]        echo until a blocked read returns EBADFD (the host stalls vmcd),
 *                                           then open a new session and echo; ROUNDS times (2)
 *   vmctest kill9   [--count KILLS]         continuous echo while the host SIGKILLs vmcd KILLS times: every
 *                                           message whose write() succeeded is echoed or its session
 *                                           reports EBADFD; counts printed
 *   vmctest soak                            echo continuously until the console gets a line (the host
 *                                           writes one); progress every second
 *   vmctest attach                          a session served by the router, then (the host attaches
 *                                           vmcctl attach + hmc-example and writes a console line) by the
 *                                           host-side HMC: echoes, an unsolicited request that must reach
 *                                           this process blocked in read() within 100 ms, then (the host
 *                                           detaches and writes a line) by the router again, same session
 *   vmctest fault NAME                      the driver's reaction to vmcd --faults tests/guest/faults/NAME.faults
 *                                           (PASS, or XFAIL for a known driver bug, quoted), then a new session
 * Messages use the HMC command-router format (32-byte big-endian header).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VMC_IOCTL_SETHMCID   0x8008CC00UL
#define VMC_IOCTL_QUERY      0x400CCC01UL
#define VMC_IOCTL_REQUESTVMC 0x4004CC02UL

struct vmc_query { int have_vmc, state, vmc_drc_index; };

enum { HDR = 32, OP_EXCHANGE = 0x0001, OP_CLOSE = 0x0002, OP_ECHO = 0x0103, CAT_ROUTER = 0x8000 };
/* The command router refuses messages longer than this whatever the MTU (PowerVM's limit). */
enum { ROUTER_LIMIT = 4096, RC_BAD_MESSAGE = 0x8022 };

static int passed, failed, mtu = 4096;

static void pass(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void xfail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void report(const char *verdict, const char *name, const char *fmt, va_list ap)
{
    printf("VMCTEST %s %s ", verdict, name);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}
static void pass(const char *name, const char *fmt, ...) { va_list ap; va_start(ap, fmt); report("PASS", name, fmt, ap); va_end(ap); passed++; }
static void fail(const char *name, const char *fmt, ...) { va_list ap; va_start(ap, fmt); report("FAIL", name, fmt, ap); va_end(ap); failed++; }
static void xfail(const char *name, const char *fmt, ...) { va_list ap; va_start(ap, fmt); report("XFAIL", name, fmt, ap); va_end(ap); }

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint16_t get16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Builds a router request; returns its length. */
static int build(uint8_t *m, uint16_t cat, uint16_t op, uint32_t token, const uint8_t *data, int len)
{
    memset(m, 0, HDR);
    m[0] = 0xDE; m[1] = 0xCA; m[2] = 0xFF; m[3] = HDR;
    put32(m + 4, HDR + len); put32(m + 8, token); put16(m + 12, cat);
    m[15] = 0x80; put32(m + 16, len); put16(m + 20, op);
    if (len) memcpy(m + HDR, data, len);
    return HDR + len;
}

/* Reads one message with a timeout; returns its length or -errno. */
static int recv_msg(int fd, uint8_t *buf, double timeout)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, (int)(timeout * 1000));
    if (r == 0) return -ETIMEDOUT;
    r = read(fd, buf, mtu);
    return r < 0 ? -errno : r;
}

/* One request/response; returns the router return code, or -errno; checks token and echo data. */
static int call(int fd, uint16_t cat, uint16_t op, uint32_t token, const uint8_t *data, int len)
{
    static uint8_t req[65536], resp[65536];
    int n = build(req, cat, op, token, data, len), r;
    for (double end = now() + 5; (r = write(fd, req, n)) < 0 && errno == EBUSY && now() < end;) usleep(1000);
    if (r != n) return r < 0 ? -errno : -EIO;
    r = recv_msg(fd, resp, 10);
    if (r < 0) return r;
    if (r < HDR || resp[0] != 0xDE || get32(resp + 4) != (uint32_t)r || !(resp[15] & 0x40) || get32(resp + 8) != token || get16(resp + 20) != op)
        return -EPROTO;
    if (op == OP_ECHO && get16(resp + 22) == 0 && (r != n || memcmp(resp + HDR, data, len)))
        return -EBADMSG;
    return get16(resp + 22);
}

/* Opens /dev/ibmvmc and sets the HMC ID, retrying until the deadline while the adapter is not ready
 * (EAGAIN), has no free HMC (EBUSY: e.g. CLOSE_RESP of the previous session not yet in) or no
 * buffers (ENOBUFS: vmcd has not added them again yet). These failures assign no HMC to the file. */
static int open_session(const char *id, double timeout, int *err)
{
    char hmcid[32] = { 0 };
    /* The driver copies exactly 32 bytes (HMC_ID_LEN); unused bytes stay zero. */
    memcpy(hmcid, id, strnlen(id, sizeof hmcid));
    double end = now() + timeout;
    do {
        int fd = open("/dev/ibmvmc", O_RDWR);
        if (fd < 0) { *err = errno; return -1; }
        if (ioctl(fd, VMC_IOCTL_SETHMCID, hmcid) == 0) {
            /* Wait for OPEN_RESP: writes say EBUSY while the HMC is opening. */
            return fd;
        }
        *err = errno;
        close(fd);
        usleep(100000);
    } while (now() < end);
    return -1;
}

static uint8_t data[65536];

/* An echo of LEN data bytes: echoed when the message fits the router's limit, else refused with
 * 0x8022 (the session stays usable). */
static void check_echo(int fd, int len, uint32_t token)
{
    char name[32];
    snprintf(name, sizeof name, "echo-%d", len);
    for (int i = 0; i < len; i++) data[i] = (uint8_t)(i * 7 + token);
    int rc = call(fd, CAT_ROUTER, OP_ECHO, token, data, len);
    if (HDR + len <= ROUTER_LIMIT) {
        if (rc == 0) pass(name, "data verified");
        else fail(name, "rc %d", rc);
    } else {
        snprintf(name, sizeof name, "router-limit-%d", HDR + len);
        if (rc == RC_BAD_MESSAGE) pass(name, "rc 0x%x (message over %d bytes)", rc, ROUTER_LIMIT);
        else fail(name, "rc %d, want 0x%x for a %d-byte message", rc, RC_BAD_MESSAGE, HDR + len);
    }
}

/* Driver states (ibmvmc.h; a u32 in the driver): 0 initial, 1 crqinit, 2 capabilities, 3 ready, 4 failed. */
enum { ST_INITIAL = 0, ST_CRQINIT = 1, ST_READY = 3 };

/* QUERY right after the module loaded: the probe has registered the CRQ, so the state is crqinit,
 * capabilities or ready, and have_vmc is what the driver derives from it (state > initial). */
static int query_ready(int qfd, struct vmc_query *q)
{
    if (ioctl(qfd, VMC_IOCTL_QUERY, q) != 0) { fail("query-initial", "%s", strerror(errno)); return 1; }
    if ((unsigned)q->state < ST_CRQINIT || (unsigned)q->state > ST_READY || q->have_vmc != ((unsigned)q->state > ST_INITIAL))
        fail("query-initial", "have_vmc=%d state=%d: want state 1..3 (probe done) and have_vmc=1", q->have_vmc, q->state);
    else pass("query-initial", "have_vmc=%d state=%d", q->have_vmc, q->state);
    /* Wait (bounded) until the driver reports state ready. */
    double end = now() + 20;
    while (ioctl(qfd, VMC_IOCTL_QUERY, q) == 0 && q->state != ST_READY && now() < end) usleep(100000);
    if (q->state == ST_READY && q->have_vmc) { pass("query-ready", "state=%d", q->state); return 0; }
    fail("query-ready", "adapter never ready (state %d): is the spapr-vmc device there and vmcd running?", q->state);
    return 1;
}

static int request_vmc(int qfd, uint32_t drc)
{
    uint32_t idx = 0;
    if (ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx) != 0) { fail("requestvmc", "%s", strerror(errno)); return 1; }
    if (drc && idx != drc) { fail("requestvmc", "DRC index 0x%x, expected 0x%x", idx, drc); return 1; }
    pass("requestvmc", "DRC index 0x%x", idx);
    return 0;
}

/* vmctest query: the adapter comes up and answers REQUESTVMC (no HMC session needed). */
static int query(uint32_t drc)
{
    struct vmc_query q;
    int qfd = open("/dev/ibmvmc", O_RDWR);
    if (qfd < 0) { fail("open", "/dev/ibmvmc: %s", strerror(errno)); return 1; }
    int rc = query_ready(qfd, &q) || request_vmc(qfd, drc);
    close(qfd);
    return rc;
}

static int basic(uint32_t drc)
{
    int err = 0, rc;
    struct vmc_query q;
    int qfd = open("/dev/ibmvmc", O_RDWR);
    if (qfd < 0) { fail("open", "/dev/ibmvmc: %s", strerror(errno)); return 1; }
    if (query_ready(qfd, &q)) return 1;
    request_vmc(qfd, drc);
    close(qfd);

    int fd = open_session("vmctest-basic", 10, &err);
    if (fd < 0) { fail("sethmcid", "%s", strerror(err)); return 1; }
    pass("sethmcid", "ok");
    rc = call(fd, CAT_ROUTER, OP_ECHO, 1, data, 4);
    rc == 0x8028 ? pass("router-echo-before-open", "rc 0x8028") : fail("router-echo-before-open", "rc %d", rc);
    rc = call(fd, CAT_ROUTER, OP_EXCHANGE, 2, NULL, 0);
    rc == 0 ? pass("router-exchange-ops", "ok") : fail("router-exchange-ops", "rc %d", rc);
    check_echo(fd, 1, 3);
    check_echo(fd, 32, 4);
    check_echo(fd, mtu / 2, 5);
    check_echo(fd, mtu - HDR, 6);
    if (mtu > ROUTER_LIMIT) {   /* the largest message the router takes, and the smallest it refuses */
        check_echo(fd, ROUTER_LIMIT - HDR, 13);
        check_echo(fd, ROUTER_LIMIT - HDR + 1, 14);
        rc = call(fd, CAT_ROUTER, OP_ECHO, 15, (const uint8_t *)"still", 5);
        rc == 0 ? pass("router-limit-session-usable", "echo after the refusals") : fail("router-limit-session-usable", "rc %d", rc);
    }
    memset(data, 0, sizeof data);
    rc = write(fd, data, mtu + 1);
    (rc < 0 && errno == EIO) ? pass("write-over-mtu", "EIO") : fail("write-over-mtu", "write returned %d (%s)", rc, strerror(errno));
    rc = call(fd, CAT_ROUTER, 0x0777, 7, NULL, 0);
    rc == 0x8001 ? pass("router-invalid-opcode", "rc 0x8001") : fail("router-invalid-opcode", "rc %d", rc);
    rc = call(fd, 0x7000, OP_ECHO, 8, data, 1);
    rc == 0x8024 ? pass("router-invalid-category", "rc 0x8024") : fail("router-invalid-category", "rc %d", rc);
    rc = call(fd, CAT_ROUTER, OP_CLOSE, 9, NULL, 0);
    rc == 0 ? pass("router-close", "ok") : fail("router-close", "rc %d", rc);
    close(fd);
    /* No sleep for CLOSE_RESP: open_session polls SETHMCID until the HMC is free again. */
    fd = open_session("vmctest-reopen", 10, &err);
    if (fd < 0) { fail("reopen", "%s", strerror(err)); return 1; }
    rc = call(fd, CAT_ROUTER, OP_EXCHANGE, 10, NULL, 0);
    if (rc == 0) rc = call(fd, CAT_ROUTER, OP_ECHO, 11, (const uint8_t *)"again", 5);
    rc == 0 ? pass("reopen", "new session echoes") : fail("reopen", "rc %d", rc);
    call(fd, CAT_ROUTER, OP_CLOSE, 12, NULL, 0);
    close(fd);
    return 0;
}

static int burst(int count, const char *id)
{
    int err = 0;
    int fd = open_session(id, 20, &err);
    if (fd < 0) { fail("burst-open", "%s", strerror(err)); return 1; }
    if (call(fd, CAT_ROUTER, OP_EXCHANGE, 1, NULL, 0) != 0) { fail("burst-open", "exchange-ops"); close(fd); return 1; }
    static uint8_t req[65536], resp[65536];
    int window = 8, sent = 0, got = 0;
    double t0 = now();
    while (got < count) {
        while (sent < count && sent - got < window) {
            put32(data, sent);
            int n = build(req, CAT_ROUTER, OP_ECHO, sent, data, 4);
            if (write(fd, req, n) != n) { if (errno == EBUSY) break; fail("burst", "write %d: %s", sent, strerror(errno)); close(fd); return 1; }
            sent++;
        }
        int r = recv_msg(fd, resp, 10);
        if (r < 0) { fail("burst", "read after %d replies: %s", got, strerror(-r)); close(fd); return 1; }
        if (r != HDR + 4 || get32(resp + 8) != (uint32_t)got || get32(resp + HDR) != (uint32_t)got) {
            fail("burst", "reply %d out of order or corrupt (token %u)", got, get32(resp + 8)); close(fd); return 1;
        }
        got++;
    }
    double secs = now() - t0;
    pass("burst", "%d echoes in order, %.0f msg/s", count, count / secs);
    call(fd, CAT_ROUTER, OP_CLOSE, 2, NULL, 0);
    close(fd);
    return 0;
}

static int twohmc(void)
{
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            passed = failed = 0;
            burst(300, k ? "vmctest-hmc-b" : "vmctest-hmc-a");
            _exit(failed ? 1 : 0);
        }
    }
    int ok = 1;
    for (int k = 0; k < 2; k++) { int st; waitpid(kids[k], &st, 0); ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0; }
    ok ? pass("two-sessions", "two processes, interleaved traffic") : fail("two-sessions", "a session failed");
    return 0;
}

static int cmp_double(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

/* Sequential echo round trips of 32-byte (header only) and MTU-sized messages: rate and median. */
static int bench(int count)
{
    int err = 0;
    int fd = open_session("vmctest-bench", 20, &err);
    if (fd < 0 || call(fd, CAT_ROUTER, OP_EXCHANGE, 1, NULL, 0) != 0) { fail("bench-open", "%s", strerror(err)); return 1; }
    static double rtt[100000];
    if (count > 100000) count = 100000;
    double total = 0;
    int sizes[2] = { HDR, mtu };
    for (int k = 0; k < 2; k++) {
        int len = sizes[k] - HDR;
        for (int i = 0; i < 100; i++) call(fd, CAT_ROUTER, OP_ECHO, i, data, len);
        double t0 = now();
        for (int i = 0; i < count; i++) {
            double s = now();
            int rc = call(fd, CAT_ROUTER, OP_ECHO, i, data, len);
            rtt[i] = (now() - s) * 1e6;
            if (rc != 0) { fail("bench", "echo %d rc %d", i, rc); close(fd); return 1; }
        }
        double secs = now() - t0;
        total += secs;
        qsort(rtt, count, sizeof rtt[0], cmp_double);
        char name[32];
        snprintf(name, sizeof name, "bench-%d", sizes[k]);
        pass(name, "msgs_per_s=%.0f median_us=%.1f p99_us=%.1f", count / secs, rtt[count / 2], rtt[count * 99 / 100]);
    }
    printf("VMCTEST BENCH total_s=%.3f\n", total);
    call(fd, CAT_ROUTER, OP_CLOSE, 2, NULL, 0);
    close(fd);
    return 0;
}

static void on_alarm(int sig) { (void)sig; }

static int restart(int closed_session)
{
    int err = 0, closed = -1;
    if (closed_session) {
        /* A session on the first HMC, closed before vmcd goes away: the driver keeps a stale
         * file_session pointer on that HMC, and the transport event writes through it (trap 3). */
        closed = open_session("vmctest-closed", 20, &err);
        if (closed < 0 || call(closed, CAT_ROUTER, OP_EXCHANGE, 1, NULL, 0) != 0) {
            fail("restart-closed-session", "%s", closed < 0 ? strerror(err) : "exchange-ops");
            return 1;
        }
    }
    int fd = open_session("vmctest-restart", 20, &err);
    if (fd < 0) { fail("restart-first-session", "%s", strerror(err)); return 1; }
    if (call(fd, CAT_ROUTER, OP_EXCHANGE, 1, NULL, 0) != 0) { fail("restart-first-session", "exchange-ops"); return 1; }
    pass("restart-first-session", "ok");
    if (closed >= 0) {
        call(closed, CAT_ROUTER, OP_CLOSE, 2, NULL, 0);
        close(closed);
        pass("restart-closed-session", "second HMC's session closed before the restart");
    }
    printf("VMCTEST WAITING restart\n");
    fflush(stdout);
    /* A blocking read: the driver's poll() reports only queued data, never the dead session. */
    uint8_t buf[65536];
    alarm(60);
    int r = read(fd, buf, mtu);
    r = r < 0 ? -errno : r;
    alarm(0);
    (r == -EBADFD) ? pass("restart-transport-event", "read returned EBADFD") : fail("restart-transport-event", "read returned %d", r);
    close(fd);
    double end = now() + 90;
    int rc = -1;
    while (now() < end) {
        fd = open_session("vmctest-after", 5, &err);
        if (fd < 0) continue;
        rc = call(fd, CAT_ROUTER, OP_EXCHANGE, 2, NULL, 0);
        if (rc == 0) rc = call(fd, CAT_ROUTER, OP_ECHO, 3, (const uint8_t *)"back", 4);
        close(fd);
        if (rc == 0) break;
        usleep(200000);
    }
    rc == 0 ? pass("restart-new-session", "echo after vmcd restart") : fail("restart-new-session", "rc %d", rc);
    return 0;
}

/* vmctest watch: the adapter as the driver reports it, every 0.2 s, whatever the back-end does,
 * and the driver's kernel messages since the start (VMCTEST KMSG lines: its warnings, such as the
 * transport event's "virtual adapter failed", do not reach the console). */
static int watch(int count)
{
    int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
    if (kmsg >= 0) lseek(kmsg, 0, SEEK_END);
    for (int i = 0; i < count; i++) {
        char rec[1024];
        ssize_t k;
        while (kmsg >= 0 && ((k = read(kmsg, rec, sizeof rec - 1)) > 0 || (k < 0 && errno == EPIPE))) {
            if (k <= 0) continue;   /* EPIPE: records were overwritten; go on with the next */
            rec[k] = 0;
            char *msg = strchr(rec, ';'), *nl;
            if (!msg || !strstr(msg, "ibmvmc")) continue;
            if ((nl = strchr(++msg, '\n'))) *nl = 0;
            printf("VMCTEST KMSG %s\n", msg);
        }
        struct vmc_query q = { 0 };
        uint32_t idx = 0;
        int qr = -ENODEV, rr = -ENODEV, fd = open("/dev/ibmvmc", O_RDWR);
        if (fd >= 0) {
            qr = ioctl(fd, VMC_IOCTL_QUERY, &q) ? -errno : 0;
            rr = ioctl(fd, VMC_IOCTL_REQUESTVMC, &idx) ? -errno : 0;
            close(fd);
        }
        printf("VMCTEST WATCH %d query=%d have_vmc=%d state=%d requestvmc=%d drc=0x%x\n", i, qr, q.have_vmc, q.state, rr, idx);
        fflush(stdout);
        usleep(200000);     /* the polling interval, not a wait for a condition */
    }
    return 0;
}

/* A new session that echoes, retried until DEADLINE (the adapter resets and re-initialises after a
 * transport event; vmcd may be coming back). Returns the fd (session open, one echo done) or -1. */
static int session_that_echoes(const char *id, double deadline, uint32_t token)
{
    int err = 0;
    while (now() < deadline) {
        int fd = open_session(id, deadline - now(), &err);
        if (fd < 0) return -1;
        int rc = call(fd, CAT_ROUTER, OP_EXCHANGE, token, NULL, 0);
        if (rc == 0) rc = call(fd, CAT_ROUTER, OP_ECHO, token + 1, (const uint8_t *)"back", 4);
        if (rc == 0) return fd;
        close(fd);
        usleep(100000);
    }
    return -1;
}

/* One echo: 0 when echoed; otherwise which call failed and how (*write_ok tells whether write()
 * accepted the message). The read blocks (a 30 s alarm guards it): only a transport event ends a
 * session the driver has, and it shows as EBADFD. */
static int echo_once(int fd, uint32_t token, int len, int *write_ok, double *blocked_ms)
{
    static uint8_t req[65536], resp[65536];
    put32(data, token);
    int n = build(req, CAT_ROUTER, OP_ECHO, token, data, len), r;
    *write_ok = 0;
    for (double end = now() + 5; (r = write(fd, req, n)) < 0 && errno == EBUSY && now() < end;) usleep(1000);
    if (r != n) return r < 0 ? -errno : -EIO;
    *write_ok = 1;
    double t = now();
    alarm(30);
    r = read(fd, resp, mtu);
    r = r < 0 ? -errno : r;
    alarm(0);
    if (blocked_ms) *blocked_ms = (now() - t) * 1e3;
    if (r < 0) return r;
    if (r == 0) return -ENODATA;
    if (r != n || get32(resp + 8) != token || get16(resp + 22) != 0 || memcmp(resp + HDR, data, len)) return -EBADMSG;
    return 0;
}

/* vmctest stall: the host SIGSTOPs vmcd while this echoes; QEMU declares it lost after one
 * deadline and the guest's blocked read gets the transport event (EBADFD). Then a new session
 * (the host resumes vmcd in round 1 and replaces it in round 2). */
static int stall(int rounds)
{
    uint32_t token = 1;
    int fd = session_that_echoes("vmctest-stall", now() + 60, token);
    token += 2;
    if (fd < 0) { fail("stall-open", "no session that echoes within 60 s"); return 1; }
    for (int round = 1; round <= rounds; round++) {
        char name[48];
        int echoes = 0, wok, rc = 0;
        double blocked = 0, last = now(), end = now() + 120;
        while (now() < end) {
            rc = echo_once(fd, token++, 32, &wok, &blocked);
            if (rc) break;
            last = now();
            if (++echoes == 20) { printf("VMCTEST INFO stall-%d echoing\n", round); fflush(stdout); }
        }
        snprintf(name, sizeof name, "stall-%d-transport-event", round);
        const char *first = "";
        if (rc == -EIO && !wok) {
            /* 6.12's write() reports a failed H_COPY_RDMA (the stall hit the copy in the write:
             * H_HARDWARE after the deadline); the session must then report EBADFD to a read */
            static uint8_t resp[65536];
            double t = now();
            alarm(30);
            int r = read(fd, resp, mtu);
            rc = r < 0 ? -errno : -EBADMSG;
            alarm(0);
            blocked = (now() - t) * 1e3;
            wok = 1;
            first = "write() got EIO, then ";
        }
        if (rc == -EBADFD && wok)
            pass(name, "%sblocked read returned EBADFD %.0f ms after the last echo (read blocked %.0f ms), %d echoes before",
                 first, (now() - last) * 1e3, blocked, echoes);
        else
            fail(name, "echo %d ended with %s (%s) instead of EBADFD in the read", echoes, rc ? strerror(-rc) : "no stall within 120 s", wok ? "read" : "write");
        close(fd);
        double t = now();
        fd = session_that_echoes("vmctest-stall", t + 90, token);
        token += 2;
        snprintf(name, sizeof name, "stall-%d-new-session", round);
        if (fd < 0) { fail(name, "no session that echoes within 90 s"); return 1; }
        pass(name, "echoing again %.1f s after the transport event", now() - t);
    }
    call(fd, CAT_ROUTER, OP_CLOSE, token, NULL, 0);
    close(fd);
    return 0;
}

/* The driver's read race with a transport event (found by kill9): ibmvmc_read() takes the queued
 * buffer under hmc->lock, drops the lock and only then copies it out, while the transport event's
 * ibmvmc_return_hmc() frees every buffer and zeroes it under that lock. */
#define READ_RACE "ibmvmc_read(): \"spin_unlock_irqrestore(&hmc->lock, flags); nbytes = min_t(size_t, nbytes, buffer->msg_len); " \
    "n = copy_to_user((void *)buf, buffer->real_addr_local, nbytes);\" runs while ibmvmc_return_hmc() does " \
    "\"free_dma_buffer(...buffer[i].real_addr_local...); memset(&buffer[i], 0, ...)\" for the transport event: " \
    "the message that had arrived is lost (read fails with EFAULT, \"read: copy to user failed\", or returns 0 bytes)"

/* vmctest kill9: continuous echo while the host kills vmcd KILLS times (it waits for the "busy"
 * line of each session before the next kill). Accounting: every message whose write() succeeded is
 * either echoed or answered by EBADFD in its read (its session ended by a transport event);
 * a read that fails with EFAULT or returns 0 bytes and is followed by EBADFD is the driver's read
 * race (XFAIL); anything else is a lost message. */
static int kill9(int kills)
{
    long written = 0, echoed = 0, ebadfd = 0, raced = 0, lost = 0, refused = 0;
    double worst = 0;
    uint32_t token = 1;
    for (int session = 1; session <= kills + 1; session++) {
        double t = now();
        int fd = session_that_echoes("vmctest-kill9", t + 60, token);
        token += 2;
        if (fd < 0) { fail("kill9-reopen", "session %d: none that echoes within 60 s", session); break; }
        if (session > 1 && now() - t > worst) worst = now() - t;
        printf("VMCTEST INFO kill9 session=%d echoing after %.0f ms\n", session, (now() - t) * 1e3);
        fflush(stdout);
        for (int n = 1;; n++) {
            int wok, len = 32 + (int)(token % 7) * 100, rc = echo_once(fd, token++, len, &wok, NULL);
            written += wok;
            if (rc == 0) echoed++;
            else if (rc == -EBADFD && wok) { ebadfd++; break; }
            else if (!wok) { refused++; break; }    /* write() refused it: not acknowledged */
            else {
                static uint8_t resp[65536];
                int again = -1;
                if (rc == -EFAULT || rc == -ENODATA) {  /* the session must be over: read again */
                    alarm(30);
                    again = read(fd, resp, mtu) < 0 ? errno : 0;
                    alarm(0);
                }
                if (again == EBADFD) raced++;
                else lost++;
                printf("VMCTEST INFO kill9 session=%d message %u: %s%s\n", session, token - 1, strerror(-rc),
                       again == EBADFD ? ", then EBADFD (the driver's read race)" : "");
                break;
            }
            if (n == 50) { printf("VMCTEST INFO kill9 session=%d busy\n", session); fflush(stdout); }
            if (session == kills + 1 && n == 100) break;
        }
        close(fd);
    }
    printf("VMCTEST INFO kill9 written=%ld echoed=%ld ebadfd=%ld read-race=%ld lost=%ld write-refused=%ld\n",
           written, echoed, ebadfd, raced, lost, refused);
    if (lost || written != echoed + ebadfd + raced || ebadfd + raced + refused < kills)
        fail("kill9-nothing-lost", "written=%ld echoed=%ld ebadfd=%ld read-race=%ld lost=%ld write-refused=%ld (%d kills)",
             written, echoed, ebadfd, raced, lost, refused, kills);
    else if (raced)
        xfail("kill9-nothing-lost", "written=%ld echoed=%ld ebadfd=%ld lost=0, but %ld lost by the driver: " READ_RACE,
              written, echoed, ebadfd, raced);
    else
        pass("kill9-nothing-lost", "written=%ld echoed=%ld ebadfd=%ld lost=0 (write refused %ld)", written, echoed, ebadfd, refused);
    printf("VMCTEST INFO kill9 slowest-recovery-ms=%.0f\n", worst * 1e3);
    return 0;
}

/* vmctest soak: echo continuously until a line arrives on the console (stdin); no echo may fail
 * or take longer than 5 s. */
static int soak(void)
{
    uint32_t token = 1;
    int fd = session_that_echoes("vmctest-soak", now() + 60, token);
    token += 2;
    if (fd < 0) { fail("soak", "no session that echoes within 60 s"); return 1; }
    long n = 0;
    double slowest = 0, next = now();
    for (;;) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        if (poll(&p, 1, 0) > 0) break;
        double t = now();
        int wok, rc = echo_once(fd, token++, 64, &wok, NULL);
        if (rc) { fail("soak", "echo %ld: %s (%s)", n, strerror(-rc), wok ? "read" : "write"); close(fd); return 1; }
        n++;
        if (now() - t > slowest) slowest = now() - t;
        if (now() >= next) { printf("VMCTEST INFO soak n=%ld\n", n); fflush(stdout); next = now() + 1; }
    }
    if (slowest <= 5) pass("soak", "%ld echoes, slowest %.0f ms", n, slowest * 1e3);
    else fail("soak", "%ld echoes, slowest %.0f ms (over 5 s)", n, slowest * 1e3);
    call(fd, CAT_ROUTER, OP_CLOSE, token, NULL, 0);
    close(fd);
    return 0;
}

/* Waits for a line on the console (the host harness writes one when it has done its part). */
static int console_line(const char *waiting, double timeout)
{
    char buf[256];
    printf("VMCTEST WAITING %s\n", waiting);
    fflush(stdout);
    for (double end = now() + timeout; now() < end;) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n > 0 && memchr(buf, '\n', n)) return 0;
        }
    }
    return -1;
}

/* One request and its response on an open session; *dlen gets the response's data length and the
 * data goes to out (which must hold the MTU). Returns the router rc or -errno. */
static int call_data(int fd, uint16_t op, uint32_t token, const char *text, uint8_t *out, int *dlen)
{
    static uint8_t req[65536];
    int n = build(req, CAT_ROUTER, op, token, (const uint8_t *)text, text ? (int)strlen(text) : 0), r;
    for (double end = now() + 5; (r = write(fd, req, n)) < 0 && errno == EBUSY && now() < end;) usleep(1000);
    if (r != n) return r < 0 ? -errno : -EIO;
    r = recv_msg(fd, out, 10);
    if (r < 0) return r;
    if (r < HDR || get32(out + 8) != token || !(out[15] & 0x40) || get16(out + 20) != op) return -EPROTO;
    *dlen = r - HDR;
    return get16(out + 22);
}

/* The identify request hmc-example answers with its name (0x0F01 is no router opcode: the
 * built-in router refuses it). Returns 1 when hmc-example answered, 0 when someone else did. */
enum { OP_IDENTIFY = 0x0F01 };
static int identify(int fd, uint32_t token, int *rc)
{
    static uint8_t resp[65536];
    int dlen = 0;
    *rc = call_data(fd, OP_IDENTIFY, token, NULL, resp, &dlen);
    return *rc == 0 && dlen == 11 && !memcmp(resp + HDR, "hmc-example", 11);
}

/* vmctest attach: one session, served by the router, then by a host-side HMC (vmcctl attach with
 * hmc-example), then by the router again after the detach, never reopened. */
static int attach(void)
{
    static uint8_t resp[65536];
    uint32_t token = 1;
    int rc, dlen;
    int fd = session_that_echoes("vmctest-attach", now() + 60, token);
    token += 2;
    if (fd < 0) { fail("attach-router-before", "no session that echoes within 60 s"); return 1; }
    if (identify(fd, token++, &rc)) { fail("attach-router-before", "hmc-example answered before the attach"); return 1; }
    pass("attach-router-before", "the router echoes and refuses identify (rc 0x%x)", rc);

    if (console_line("attach", 120)) { fail("attach-attached", "the host never said it attached"); return 1; }
    if (!identify(fd, token++, &rc)) { fail("attach-attached", "identify rc %d: not answered by hmc-example", rc); return 1; }
    pass("attach-attached", "identify answered by hmc-example on the same session");
    rc = call(fd, CAT_ROUTER, OP_EXCHANGE, token++, NULL, 0);
    int sizes[3] = { 1, 1000, mtu - HDR }, ok = rc == 0;
    for (int i = 0; i < 3 && ok; i++) {
        for (int j = 0; j < sizes[i]; j++) data[j] = (uint8_t)(j * 13 + i);
        rc = call(fd, CAT_ROUTER, OP_ECHO, token++, data, sizes[i]);
        ok = rc == 0;
    }
    ok ? pass("attach-echo", "exchange-ops and echoes of 1, 1000 and %d bytes through hmc-example", mtu - HDR)
       : fail("attach-echo", "rc %d", rc);

    /* hmc-example sends an unsolicited echo request DELAY ms after its reply to "UNSOLICITED DELAY";
     * meanwhile this process blocks in read(). Its arrival, less DELAY, counted from before the write of
     * the request, bounds the unsolicited message's delivery from above (the request's and reply's
     * trips are included). */
    enum { DELAY_MS = 300 };
    char text[32];
    snprintf(text, sizeof text, "UNSOLICITED %d", DELAY_MS);
    double t0 = now();
    rc = call_data(fd, OP_ECHO, token++, text, resp, &dlen);
    if (rc != 0) { fail("attach-unsolicited", "the UNSOLICITED request: rc %d", rc); return 1; }
    double tr = now();
    alarm(10);
    int r = read(fd, resp, mtu);
    r = r < 0 ? -errno : r;
    alarm(0);
    double ta = now(), late = (ta - t0) * 1e3 - DELAY_MS, blocked = (ta - tr) * 1e3;
    if (r < HDR || !(resp[15] & 0x80) || get16(resp + 20) != OP_ECHO || r - HDR != 6 || memcmp(resp + HDR, "PING 1", 6)) {
        fail("attach-unsolicited", "blocked read returned %d%s", r, r >= HDR ? " (not the PING 1 echo request)" : "");
        return 1;
    }
    uint32_t ptoken = get32(resp + 8);
    if (late <= 100 && blocked >= 100)
        pass("attach-unsolicited", "echo request token 0x%x reached the blocked read() at most %.1f ms after it was sent (read blocked %.0f ms)",
             ptoken, late, blocked);
    else
        fail("attach-unsolicited", "arrived %.1f ms late (limit 100), read blocked %.0f ms (at least 100 proves it was blocked)", late, blocked);
    /* The partition answers the HMC's echo request with its data. */
    static uint8_t ans[HDR + 6];
    build(ans, CAT_ROUTER, OP_ECHO, ptoken, resp + HDR, 6);
    ans[15] = 0x40;
    r = write(fd, ans, sizeof ans);
    r == (int)sizeof ans ? pass("attach-unsolicited-answered", "response written") : fail("attach-unsolicited-answered", "write %d: %s", r, strerror(errno));
    rc = call(fd, CAT_ROUTER, OP_ECHO, token++, (const uint8_t *)"after", 5);
    rc == 0 ? pass("attach-echo-after-unsolicited", "ok") : fail("attach-echo-after-unsolicited", "rc %d", rc);

    /* BYE: hmc-example replies and exits, vmcctl detaches. */
    rc = call_data(fd, OP_ECHO, token++, "BYE", resp, &dlen);
    if (rc != 0) { fail("attach-detached", "BYE: rc %d", rc); return 1; }
    if (console_line("detach", 60)) { fail("attach-detached", "the host never said it detached"); return 1; }
    int irc;
    if (identify(fd, token++, &irc)) { fail("attach-detached", "hmc-example still answers"); return 1; }
    rc = call(fd, CAT_ROUTER, OP_EXCHANGE, token++, NULL, 0);
    if (rc == 0) rc = call(fd, CAT_ROUTER, OP_ECHO, token++, (const uint8_t *)"router again", 12);
    rc == 0 ? pass("attach-detached", "the router serves the same session again (identify rc 0x%x, exchange-ops and echo ok)", irc)
            : fail("attach-detached", "rc %d", rc);
    rc = call(fd, CAT_ROUTER, OP_CLOSE, token++, NULL, 0);
    rc == 0 ? pass("attach-close", "ok") : fail("attach-close", "rc %d", rc);
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------ fault scenarios
 * vmctest fault NAME: the guest half of scripts/boot-test.sh's faults group. vmcd runs with
 * --faults tests/guest/faults/NAME.faults; this observes the driver's reaction and says which it
 * is: PASS (the reaction a correct driver has: recovered, an errno, a documented stuck state),
 * XFAIL (a known bug of the driver, with the driver's own words quoted), FAIL (anything else).
 * The kernel's messages (/dev/kmsg) are part of the evidence: VMCTEST KMSG lines at the end. */

static char kbuf[1 << 18];
static size_t klen;
static int kmsg_fd = -2;

/* Appends the kernel's new messages (text only) to kbuf. */
static void kmsg_drain(void)
{
    if (kmsg_fd == -2) kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
    char rec[2048];
    ssize_t k;
    while (kmsg_fd >= 0 && ((k = read(kmsg_fd, rec, sizeof rec - 1)) > 0 || (k < 0 && errno == EPIPE))) {
        if (k <= 0) continue;
        rec[k] = 0;
        char *msg = strchr(rec, ';'), *nl;
        if (!msg) continue;
        if ((nl = strchr(++msg, '\n'))) *nl = 0;
        size_t n = strlen(msg);
        if (klen + n + 2 < sizeof kbuf) { memcpy(kbuf + klen, msg, n); klen += n; kbuf[klen++] = '\n'; kbuf[klen] = 0; }
    }
}

/* The first kernel message containing TEXT (copied into a static line), or NULL. */
static const char *kmsg_line(const char *text)
{
    static char line[512];
    kmsg_drain();
    char *p = strstr(kbuf, text);
    if (!p) return NULL;
    while (p > kbuf && p[-1] != '\n') p--;
    size_t n = strcspn(p, "\n");
    if (n >= sizeof line) n = sizeof line - 1;
    memcpy(line, p, n); line[n] = 0;
    return line;
}

/* Waits until a kernel message contains TEXT; returns the line or NULL. */
static const char *kmsg_wait(const char *text, double secs)
{
    const char *l;
    for (double end = now() + secs; !(l = kmsg_line(text)) && now() < end;) usleep(20000);
    return l;
}

static void kmsg_print(void)
{
    kmsg_drain();
    for (char *p = kbuf; *p;) {
        size_t n = strcspn(p, "\n");
        if (memmem(p, n, "ibmvmc", 6) || memmem(p, n, "vmc@", 4)) printf("VMCTEST KMSG %.*s\n", (int)n, p);
        p += n + (p[n] == '\n');
    }
    fflush(stdout);
}

static int adapter_state(void)
{
    struct vmc_query q = { 0 };
    int fd = open("/dev/ibmvmc", O_RDWR);
    if (fd < 0) return -errno;
    int r = ioctl(fd, VMC_IOCTL_QUERY, &q) ? -errno : q.state;
    close(fd);
    return r;
}

static int wait_state(int want, double secs)
{
    int st;
    for (double end = now() + secs; (st = adapter_state()) != want && now() < end;) usleep(20000);
    return st;
}

/* One SETHMCID on a new file: the fd, or -1 with *err. */
static int sethmcid_once(const char *id, int *err)
{
    char hmcid[32] = { 0 };
    memcpy(hmcid, id, strnlen(id, sizeof hmcid));
    int fd = open("/dev/ibmvmc", O_RDWR);
    if (fd < 0) { *err = errno; return -1; }
    if (ioctl(fd, VMC_IOCTL_SETHMCID, hmcid) == 0) return fd;
    *err = errno;
    close(fd);
    return -1;
}

/* SETHMCID on new files for SECS: 0 when one succeeded (fd in *fdp), else the errno every try gave
 * (or -1 when they differed: *last has the last one). */
static int sethmcid_for(const char *id, double secs, int *fdp, int *last)
{
    int first = 0, same = 1, err = 0;
    for (double end = now() + secs; now() < end; usleep(100000)) {
        int fd = sethmcid_once(id, &err);
        if (fd >= 0) { *fdp = fd; return 0; }
        if (!first) first = err; else if (err != first) same = 0;
        *last = err;
    }
    return same ? first : -1;
}

/* write() of one echo request: 0, or the errno (EBUSY retried for SECS). */
static int write_echo(int fd, uint32_t token, double secs)
{
    static uint8_t req[HDR + 8];
    put32(data, token);
    int n = build(req, CAT_ROUTER, OP_ECHO, token, data, 8), r;
    for (double end = now() + secs; (r = write(fd, req, n)) < 0 && errno == EBUSY && now() < end;) usleep(2000);
    return r == n ? 0 : r < 0 ? errno : EIO;
}

/* A session with no traffic yet (SETHMCID on a new file, retried for 10 s): the fault acts on its
 * first message, not on a helper's exchange. -1 with a FAIL line when none opens. */
static int plain_session(const char *id)
{
    int fd = -1, last = 0;
    wait_state(3, 20);
    if (sethmcid_for(id, 10, &fd, &last)) { fail("reaction", "no session before the fault: SETHMCID %s", strerror(last)); return -1; }
    return fd;
}

static int echoes(int fd, int count, uint32_t token)
{
    for (int i = 0; i < count; i++) {
        int rc = call(fd, CAT_ROUTER, OP_ECHO, token + i, data, 16);
        if (rc) return rc;
    }
    return 0;
}

/* The kmalloc objects still allocated by ibmvmc_open (the file sessions), summed over the slab
 * caches' alloc_traces (slub_debug=U tracks them); -1 when debugfs has no such files. */
static long live_sessions(void)
{
    mkdir("/sys/kernel/debug", 0755);
    if (access("/sys/kernel/debug/slab", F_OK)) system("mount -t debugfs none /sys/kernel/debug 2>/dev/null");
    FILE *f = popen("cat /sys/kernel/debug/slab/*/alloc_traces 2>/dev/null | grep ibmvmc_open", "r");
    if (!f) return -1;
    long total = 0, n;
    char line[512];
    int any = !access("/sys/kernel/debug/slab", F_OK);
    while (fgets(line, sizeof line, f)) if (sscanf(line, " %ld", &n) == 1) total += n;
    pclose(f);
    return any ? total : -1;
}

/* A new session that echoes within SECS: PASS recovered, else FAIL. */
static int recovered(double secs, const char *after)
{
    double t = now();
    int fd = session_that_echoes("vmctest-recovered", t + secs, 900);
    if (fd < 0) {
        int st = adapter_state();
        /* crqinit for good: the reset task sent its INIT with the interrupt off and enabled it
         * afterwards without looking at the queue, so an INIT_RESP that came in between is never
         * seen (vmcd's log says "CRQ init from guest answered"). A race of the driver: XFAIL. */
        if (st == 1)
            xfail("recovered", "stuck state: no session within %.0f s %s, the adapter stays in crqinit: "
                  "ibmvmc_reset_task() sends 0xC001 with interrupts disabled and then only calls "
                  "\"vio_enable_interrupts(to_vio_dev(adapter->dev));\" without re-checking the queue, "
                  "so an INIT_RESP that arrived before it is never processed", secs, after);
        else
            fail("recovered", "no session echoes within %.0f s %s (adapter state %d)", secs, after, st);
        return 1;
    }
    int rc = echoes(fd, 20, 910);
    call(fd, CAT_ROUTER, OP_CLOSE, 950, NULL, 0);
    close(fd);
    if (rc) { fail("recovered", "a new session opened %s but its echoes failed: rc %d", after, rc); return 1; }
    pass("recovered", "a new session echoes 20 messages %.1f s %s", now() - t, after);
    return 0;
}

#define NAME "reaction"

static int f_transport_event(void)
{
    int fd = plain_session("vmctest-te"), wok;
    if (fd < 0) return 1;
    double t = now();
    /* vmcd sends CHANNEL_FAILED 1 s after the OPEN: this read blocks until the transport event */
    static uint8_t buf[65536];
    alarm(20);
    int r = read(fd, buf, mtu);
    r = r < 0 ? -errno : r;
    alarm(0);
    (void)wok;
    const char *k = kmsg_line("virtual adapter failed");
    if (r == -EBADFD && k) pass(NAME, "errno to user space: the blocked read() returned EBADFD after %.1f s; kernel: \"%s\"", now() - t, k);
    else fail(NAME, "read returned %d (want EBADFD), kernel %s", r, k ? k : "printed no transport event");
    close(fd);
    return recovered(30, "after the transport event");
}

static int f_uaf_after_close(void)
{
    int fd = session_that_echoes("vmctest-uaf", now() + 20, 1);
    if (fd < 0) { fail(NAME, "no session before the fault"); return 1; }
    call(fd, CAT_ROUTER, OP_CLOSE, 5, NULL, 0);
    close(fd);   /* CLOSE, CLOSE_RESP; vmcd sends CHANNEL_FAILED 0.5 s later */
    const char *k = kmsg_wait("virtual adapter failed", 10);
    if (k) pass(NAME, "transport event after the session was closed; kernel: \"%s\" (a freed session is written by a stock driver: the SLUB check below)", k);
    else fail(NAME, "no transport event within 10 s of the close");
    return recovered(30, "after the transport event");
}

/* CAP_RESP values no HMC can work with (trap 1). */
static int f_cap_unusable(const char *what)
{
    int st = adapter_state();
    for (double end = now() + 10; (st == 1 || st == 2) && now() < end; usleep(20000)) st = adapter_state();
    const char *caps = kmsg_wait("Capabilities:", 1);
    int fd = -1, last = 0, err = sethmcid_for("vmctest-caps", 3, &fd, &last);
    if (fd >= 0) close(fd);
    if (st == 4 && err == EIO)
        pass(NAME, "the adapter refused the capabilities (%s): state failed, SETHMCID EIO; kernel: \"%s\"", what,
             kmsg_line("unusable") ? kmsg_line("unusable") : "(no message)");
    else if (st == 3 && fd < 0)
        xfail(NAME, "trap 1: the driver took a CAP_RESP with %s: \"%s\", reports the adapter ready, and SETHMCID fails with %s for 3 s (%s): "
              "ibmvmc_process_capabilities() validates none of max_hmc, pool_size, max_mtu",
              what, caps ? caps : "?", err > 0 ? strerror(err) : "mixed errors", err > 0 ? "stuck" : strerror(last));
    else if (st == 3 && fd >= 0)
        xfail(NAME, "trap 1: the driver took a CAP_RESP with %s: \"%s\" and opened a session on it", what, caps ? caps : "?");
    else fail(NAME, "state %d, SETHMCID %s", st, fd >= 0 ? "ok" : strerror(last));
    return 0;
}

static int f_cap_version(void)
{
    int st = wait_state(4, 10), fd = -1, last = 0;
    const char *k = kmsg_line("incompatible versions");
    int err = sethmcid_for("vmctest-ver", 1, &fd, &last);
    if (fd >= 0) close(fd);
    if (st == 4 && k && err == EIO) pass(NAME, "adapter failed, SETHMCID EIO (until the transport event vmcd sends 3 s later); kernel: \"%s\"", k);
    else fail(NAME, "state %d, SETHMCID %s, kernel %s", st, fd >= 0 ? "ok" : strerror(last), k ? k : "silent");
    return recovered(30, "after the transport event");
}

static int f_close_in_failed(void)
{
    long before = live_sessions();
    int fd = plain_session("vmctest-cif");
    if (fd < 0) return 1;
    static uint8_t buf[65536];
    alarm(20);
    int r = read(fd, buf, mtu);   /* the transport event 1 s after the OPEN */
    r = r < 0 ? -errno : r;
    alarm(0);
    int st = wait_state(4, 10);   /* the new CAP_RESP has version 2.0: failed */
    close(fd);                    /* in state failed */
    long after = live_sessions();
    const char *k = kmsg_line("close: state_failed");
    if (r != -EBADFD || st != 4) fail(NAME, "read %d (want EBADFD), state %d (want 4 failed)", r, st);
    else if (after < 0) fail(NAME, "no /sys/kernel/debug/slab/*/alloc_traces to count the file sessions");
    else if (after > before)
        xfail(NAME, "trap 14: close() in state failed leaks the file session: %ld object(s) allocated by ibmvmc_open still live after every file was closed (%ld before); kernel: \"%s\"; ibmvmc_close(): \"if (ibmvmc.state == ibmvmc_state_failed) { ... return -EIO; }\" before kfree_sensitive(session)",
              after, before, k ? k : "?");
    else pass(NAME, "read EBADFD, adapter failed, close() freed the file session (%ld live ibmvmc_open objects, as before)", after);
    return recovered(40, "after the second transport event");
}

static int f_close_resp_status(void)
{
    int fd = session_that_echoes("vmctest-crs", now() + 20, 1);
    if (fd < 0) { fail(NAME, "no session before the fault"); return 1; }
    close(fd);
    const char *k = kmsg_wait("close_resp: failed", 10);
    const char *r = kmsg_wait("Reset to initial state", 5);
    if (k) pass(NAME, "the driver reset itself (H_FREE_CRQ, H_REG_CRQ, init); kernel: \"%s\"%s%s%s", k, r ? ", \"" : "", r ? r : "", r ? "\"" : "");
    else fail(NAME, "no CLOSE_RESP failure seen by the driver");
    return recovered(30, "after the reset");
}

static int f_reg_crq_closed_reset(void)
{
    int fd = session_that_echoes("vmctest-rcr", now() + 20, 1);
    if (fd < 0) { fail(NAME, "no session before the fault"); return 1; }
    close(fd);
    const char *k = kmsg_wait("close_resp: failed", 10);
    double t = now();
    int st;
    do { usleep(50000); st = adapter_state(); } while (st != 3 && now() < t + 5);
    if (!k) { fail(NAME, "no CLOSE_RESP failure seen by the driver"); return 1; }
    if (st == 3) { pass(NAME, "reset, H_REG_CRQ H_CLOSED: waited for the partner, ready %.1f s later", now() - t); return recovered(30, "after the reset"); }
    const char *e = kmsg_line("Error initializing CRQ");
    if (st == 4) xfail(NAME, "stuck state: after the reset task's H_REG_CRQ returned H_CLOSED the adapter stays failed for good (5 s, partner ready after 1 s); kernel: \"%s\"; ibmvmc_reset_task(): \"if (rc != H_SUCCESS && rc != H_RESOURCE) { ... ibmvmc.state = ibmvmc_state_failed;\"",
                       e ? e : "?");
    else fail(NAME, "adapter state %d 5 s after the reset", st);
    return 0;
}

static int f_reg_crq(const char *want, const char *what)
{
    int st = wait_state(3, 20);
    const char *k = want ? kmsg_line(want) : NULL;
    if (st == 3 && (!want || k)) pass(NAME, "%s; ready%s%s%s", what, k ? "; kernel: \"" : "", k ? k : "", k ? "\"" : "");
    else fail(NAME, "state %d, kernel %s", st, k ? k : "silent");
    return recovered(20, "");
}

static int f_delay_cap_resp(void)
{
    double t = now();
    int st = adapter_state(), fd = -1, last = 0, eagain = 0;
    while (st != 3 && now() < t + 10) {
        fd = sethmcid_once("vmctest-dly", &last);
        if (fd >= 0) break;
        if (last == EAGAIN) eagain++;
        usleep(100000);
        st = adapter_state();
    }
    if (fd >= 0) close(fd);
    if (eagain && st == 3) pass(NAME, "errno to user space: SETHMCID EAGAIN %d times over %.1f s while the CAP_RESP was late, then ready", eagain, now() - t);
    else fail(NAME, "state %d, %d EAGAIN (want EAGAIN, then ready)", st, eagain);
    return recovered(20, "");
}

static int f_drop_cap_resp(void)
{
    double t = now();
    int eagain = 0, last = 0, fd = -1;
    while (adapter_state() == 2 && now() < t + 10) {
        fd = sethmcid_once("vmctest-drop", &last);
        if (fd >= 0) { close(fd); break; }
        if (last == EAGAIN) eagain++;
        usleep(100000);
    }
    double stuck = now() - t;
    const char *k = kmsg_wait("virtual adapter failed", 8);
    if (eagain && stuck >= 2 && k)
        pass(NAME, "stuck state: in capabilities, SETHMCID EAGAIN for %.1f s (the CAP_RESP was lost) until the transport event: \"%s\"", stuck, k);
    else fail(NAME, "%d EAGAIN over %.1f s, transport event %s", eagain, stuck, k ? "seen" : "not seen");
    return recovered(30, "after the transport event");
}

static int f_drop_open_resp(void)
{
    wait_state(3, 20);
    int fd = -1, last = 0;
    if (sethmcid_for("vmctest-dor", 10, &fd, &last)) { fail(NAME, "SETHMCID: %s", strerror(last)); return 1; }
    int err = write_echo(fd, 1, 3);
    close(fd);
    if (err == EBUSY) pass(NAME, "stuck state: the HMC stays opening (OPEN_RESP lost), write() EBUSY for 3 s; close() sends CLOSE");
    else fail(NAME, "write: %s (want EBUSY: OPEN_RESP never came)", err ? strerror(err) : "accepted");
    return recovered(20, "after close()");
}

static int f_open_resp_buffer(void)
{
    wait_state(3, 20);
    int fd = -1, last = 0;
    if (sethmcid_for("vmctest-orb", 10, &fd, &last)) { fail(NAME, "SETHMCID: %s", strerror(last)); return 1; }
    int err = write_echo(fd, 1, 3);
    close(fd);
    const char *k = kmsg_line("open_resp: invalid buffer_id");
    if (err == EIO && k) pass(NAME, "errno to user space: the HMC failed, write() EIO; kernel: \"%s\"; close() sends CLOSE", k);
    else fail(NAME, "write: %s, kernel %s", err ? strerror(err) : "accepted", k ? k : "silent");
    return recovered(20, "after close()");
}

static int f_open_resp_status(void)
{
    wait_state(3, 20);
    int fd = -1, last = 0;
    if (sethmcid_for("vmctest-ors", 10, &fd, &last)) { fail(NAME, "SETHMCID: %s", strerror(last)); return 1; }
    int err = write_echo(fd, 1, 3);
    char id[32] = "vmctest-ors2";
    int again = ioctl(fd, VMC_IOCTL_SETHMCID, id) ? errno : 0;
    close(fd);
    const char *k = kmsg_line("open_resp: failed");
    if (err == EIO && again == EIO && k) pass(NAME, "errno to user space: write() EIO, SETHMCID on the same file EIO; kernel: \"%s\"", k);
    else fail(NAME, "write %s, SETHMCID again %s, kernel %s", err ? strerror(err) : "accepted", again ? strerror(again) : "ok", k ? k : "silent");
    return recovered(20, "on a new file");
}

static int f_rdma_open(void)
{
    wait_state(3, 20);
    int fd = -1, last = 0, err = 0;
    /* one SETHMCID: its OPEN's H_COPY_RDMA fails (count=1); the file is closed */
    fd = sethmcid_once("vmctest-rdo", &err);
    if (fd >= 0) { close(fd); fail(NAME, "SETHMCID succeeded though the OPEN's H_COPY_RDMA failed"); return 1; }
    last = err;
    const char *k = kmsg_line("send_open, h_copy_rdma");
    int err2 = sethmcid_for("vmctest-rdo2", 3, &fd, &last);
    if (fd >= 0) {
        close(fd);
        pass(NAME, "errno to user space: SETHMCID %s (kernel: \"%s\"); the HMC was free again for a new file", strerror(last), k ? k : "?");
        return recovered(20, "");
    }
    if (err2 == EBUSY)
        xfail(NAME, "trap 4: after the OPEN's H_COPY_RDMA failed (SETHMCID %s; kernel: \"%s\") and the file was closed, every SETHMCID on a new file fails with EBUSY for 3 s: the HMC stays reserved (ibmvmc_close() sends nothing and frees nothing in ibmhmc_state_initial)",
              strerror(err > 0 ? err : last), k ? k : "?");
    else fail(NAME, "SETHMCID on a new file: %s", strerror(last));
    return 0;
}

static int f_rdma_write(void)
{
    wait_state(3, 20);
    int fd = -1, last = 0;
    if (sethmcid_for("vmctest-rdw", 10, &fd, &last)) { fail(NAME, "SETHMCID: %s", strerror(last)); return 1; }
    /* the OPEN armed the fault: this write's H_COPY_RDMA fails (EBUSY while the HMC is opening) */
    static uint8_t resp[65536];
    int err = write_echo(fd, 1, 5), r = err ? -err : recv_msg(fd, resp, 3);
    const char *k = kmsg_line("send_msg, h_copy_rdma");
    if (err == EIO) pass(NAME, "errno to user space: write() EIO; kernel: \"%s\"", k ? k : "?");
    else if (!err && r == -ETIMEDOUT)
        xfail(NAME, "trap 5: write() reported success though its H_COPY_RDMA failed (kernel: \"%s\"): the message is lost, no reply in 3 s; ibmvmc_write() ignores ibmvmc_send_msg()'s result",
              k ? k : "?");
    else fail(NAME, "write: %s, then read %d", err ? strerror(err) : "accepted", r);
    int rc = echoes(fd, 10, 20);
    close(fd);
    if (rc == 0) pass("recovered", "the same session echoes 10 messages afterwards");
    else return recovered(20, "on a new file");
    return 0;
}

static int f_rdma_receive(int pool)
{
    int fd = -1, last = 0, busy = 0, lost = 0, rc;
    wait_state(3, 20);
    if (sethmcid_for("vmctest-rdr", 10, &fd, &last)) { fail(NAME, "SETHMCID: %s", strerror(last)); return 1; }
    static uint8_t resp[65536];
    for (int i = 0; i < 20; i++) {
        int err = write_echo(fd, 100 + i, 0.3);
        if (err == EBUSY) { busy++; continue; }
        if (err) { fail(NAME, "write %d: %s", i, strerror(err)); close(fd); return 1; }
        rc = recv_msg(fd, resp, 0.2);
        if (rc == -ETIMEDOUT) lost++;
    }
    int err = write_echo(fd, 200, 2);
    rc = err ? -err : recv_msg(fd, resp, 5);
    close(fd);
    const char *k = kmsg_line("recv_msg: h_copy_rdma");
    if (!k) k = kmsg_line("h_copy_rdma");
    if (busy == 0 && rc > 0)
        pass(NAME, "errno to user space: none; the %d replies whose H_COPY_RDMA failed are lost (kernel: \"%s\"), every write() found a buffer, the next echo is answered", lost, k ? k : "?");
    else if (busy > 0 && rc == -EBUSY)
        xfail(NAME, "trap 5: each reply whose H_COPY_RDMA failed took a buffer with it (kernel: \"%s\"): after %d lost replies write() fails with EBUSY (%d of 20 writes, and for good) with a pool of %d",
              k ? k : "?", lost, busy, pool);
    else fail(NAME, "%d lost, %d EBUSY, last echo %d", lost, busy, rc);
    return rc > 0 ? recovered(20, "") : 0;
}

static int f_request_vmc(const int *want, const int *want_rv, int n, const char *names)
{
    char got[256] = "", wanted[256] = "";
    int ok = 1, qfd = open("/dev/ibmvmc", O_RDWR);
    wait_state(3, 20);
    double t = now();
    for (int i = 0; i < n; i++) {
        uint32_t idx = 0;
        errno = 0;
        int r = ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx);
        int e = r < 0 ? errno : 0;
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? ", " : "", r > 0 ? "positive" : e ? strerror(e) : "ok");
        if (r > 0) snprintf(got + strlen(got), sizeof got - strlen(got), " %d", r);
        snprintf(wanted + strlen(wanted), sizeof wanted - strlen(wanted), "%s%s", i ? ", " : "", want[i] ? strerror(want[i]) : "ok");
        if (e != want[i] || (want_rv && r != want_rv[i])) ok = 0;
    }
    uint32_t idx = 0;
    int last = ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx);
    close(qfd);
    if (ok && last == 0) pass(NAME, "errno to user space for %s: %s; then DRC index 0x%x (%.2f s)", names, got, idx, now() - t);
    else return -1;   /* the caller decides */
    return 0;
}

static int f_request_vmc_errors(void)
{
    static const int want[] = { EPERM, EIO, ENODEV, EINVAL, EPERM, EPERM };
    if (f_request_vmc(want, NULL, 6, "H_FUNCTION, H_HARDWARE, H_RESOURCE, H_PARAMETER, H_AUTHORITY, H_NOT_AVAILABLE"))
        fail(NAME, "not the driver's documented errnos EPERM, EIO, ENODEV, EINVAL, EPERM, EPERM");
    return 0;
}

static int f_request_vmc_busy(void)
{
    int qfd = open("/dev/ibmvmc", O_RDWR);
    wait_state(3, 20);
    uint32_t idx = 0;
    double t = now();
    int r = ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx);
    int e = errno;
    close(qfd);
    if (r == 0 && idx) pass(NAME, "recovered: the driver retried 5 H_BUSY and 3 H_LONG_BUSY_ORDER_10_MSEC, then got DRC index 0x%x (%.0f ms)", idx, (now() - t) * 1e3);
    else fail(NAME, "REQUESTVMC returned %d (%s)", r, r < 0 ? strerror(e) : "-");
    return 0;
}

static int f_request_vmc_unlisted(void)
{
    int qfd = open("/dev/ibmvmc", O_RDWR);
    wait_state(3, 20);
    uint32_t idx = 0;
    errno = 0;
    int r1 = ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx), e1 = r1 < 0 ? errno : 0;
    errno = 0;
    int r2 = ioctl(qfd, VMC_IOCTL_REQUESTVMC, &idx), e2 = r2 < 0 ? errno : 0;
    close(qfd);
    if (e1 == EIO && e2 == EIO) pass(NAME, "errno to user space: EIO for H_PRIVILEGE and for H_CLOSED");
    else if ((r1 < 0 && e1 == 3) || r2 == 2)
        xfail(NAME, "trap 13: the raw hcall results reach user space: H_PRIVILEGE (-3) as %s, H_CLOSED (2) as %s; ibmvmc_ioctl_requestvmc() falls through its list of rcs to \"return rc;\"",
              r1 < 0 ? (e1 == 3 ? "errno 3 (ESRCH)" : strerror(e1)) : "success", r2 > 0 ? "ioctl() returning 2" : r2 < 0 ? strerror(e2) : "success");
    else fail(NAME, "H_PRIVILEGE: %d (%s), H_CLOSED: %d (%s)", r1, strerror(e1), r2, strerror(e2));
    return 0;
}

static int f_signal_oversize(void)
{
    int fd = plain_session("vmctest-sig");
    if (fd < 0) return 1;
    /* the reply's SIGNAL claims MTU + 64 bytes for a 40-byte message */
    static uint8_t resp[65536];
    int err = write_echo(fd, 7, 5), r = err ? -err : recv_msg(fd, resp, 3);
    const char *k = kmsg_line("exceeds buffer size"), *c = kmsg_line("Failure in recv_msg");
    if (r == -ETIMEDOUT && k) pass(NAME, "the message was dropped before any copy; kernel: \"%s\"", k);
    else if (r == -ETIMEDOUT && c)
        xfail(NAME, "trap 2: the driver did not bound msg_len: it asked H_COPY_RDMA for %d bytes into its %d-byte buffer (the hypervisor refused: the partition's DMA window ends with the buffer), the message is lost; kernel: \"%s\"; ibmvmc_recv_msg() checks msg_len against nothing",
              mtu + 64, mtu, c);
    else if (r > HDR + 8) xfail(NAME, "trap 2: the driver took a SIGNAL claiming %d bytes for its %d-byte buffers, had H_COPY_RDMA copy that many into the buffer, and read() returned %d bytes for a %d-byte message; ibmvmc_recv_msg() does not bound msg_len",
                          mtu + 64, mtu, r, HDR + 8);
    else fail(NAME, "read %d, kernel %s", r, k ? k : "silent");
    close(fd);
    return recovered(20, "");
}

static int f_rem_buf(int last)
{
    int fd = last ? plain_session("vmctest-rem") : session_that_echoes("vmctest-rem", now() + 20, 1), rc;
    if (fd < 0) { if (!last) fail(NAME, "no session before the fault"); return 1; }
    if (!last) {
        rc = echoes(fd, 50, 10);
        rc == 0 ? pass(NAME, "recovered: the partition gave back every buffer vmcd asked for but one, and 50 echoes go on with the pool shrunk")
                : fail(NAME, "echoes after REM_BUF: rc %d", rc);
        close(fd);
        return 0;
    }
    int err = write_echo(fd, 20, 3);
    close(fd);
    if (err == EBUSY) pass(NAME, "stuck state: the partition gave its last buffer too (a hypervisor interface error it does not refuse): write() EBUSY for 3 s until close()");
    else fail(NAME, "write: %s (want EBUSY: no buffer left)", err ? strerror(err) : "accepted");
    return recovered(20, "after close() (vmcd adds a buffer for the next open)");
}

static int f_flood(int overflow)
{
    int fd = overflow ? plain_session("vmctest-flood") : session_that_echoes("vmctest-flood", now() + 20, 1), wok;
    if (fd < 0) { if (!overflow) fail(NAME, "no session before the fault"); return 1; }
    double t = now();
    int rc = 0, n = 0;
    for (; n < 50 && !(rc = echo_once(fd, 10 + n, 16, &wok, NULL)); n++) {}
    close(fd);
    const char *k = kmsg_line("virtual adapter failed");
    if (!overflow) {
        if (rc == 0 && !k) pass(NAME, "recovered: the driver drained the 2000 entries (paced at half its queue) and 50 echoes went on in %.1f s", now() - t);
        else fail(NAME, "echo %d: %s%s", n, strerror(-rc), k ? " (transport event)" : "");
        return 0;
    }
    if ((rc == -EBADFD || (rc == -EIO && !wok)) && k)
        pass(NAME, "errno to user space: echo %d's %s %s: vmcd's output backlog overflowed, CHANNEL_FAILED, transport event: \"%s\"", n, wok ? "read()" : "write()", strerror(-rc), k);
    else fail(NAME, "echo %d: %s, kernel %s", n, rc ? strerror(-rc) : "all echoed", k ? k : "no transport event");
    return recovered(30, "after the transport event");
}

static int fault(const char *name)
{
    int r = 0;
    if (!strcmp(name, "transport-event")) r = f_transport_event();
    else if (!strcmp(name, "uaf-after-close")) r = f_uaf_after_close();
    else if (!strcmp(name, "cap-max-hmc-0")) r = f_cap_unusable("max_hmc 0");
    else if (!strcmp(name, "cap-pool-0")) r = f_cap_unusable("pool size 0");
    else if (!strcmp(name, "cap-mtu-0")) r = f_cap_unusable("MTU 0");
    else if (!strcmp(name, "cap-version")) r = f_cap_version();
    else if (!strcmp(name, "close-in-failed")) r = f_close_in_failed();
    else if (!strcmp(name, "close-resp-status")) r = f_close_resp_status();
    else if (!strcmp(name, "reg-crq-closed-reset")) r = f_reg_crq_closed_reset();
    else if (!strcmp(name, "reg-crq-closed")) r = f_reg_crq("Partner adapter not ready", "the probe's H_REG_CRQ returned H_CLOSED, the driver waited in crqinit for the partner's init");
    else if (!strcmp(name, "reg-crq-resource")) r = f_reg_crq(NULL, "the probe's H_REG_CRQ returned H_RESOURCE: the driver freed and registered the queue again");
    else if (!strcmp(name, "delay-cap-resp")) r = f_delay_cap_resp();
    else if (!strcmp(name, "drop-cap-resp")) r = f_drop_cap_resp();
    else if (!strcmp(name, "drop-open-resp")) r = f_drop_open_resp();
    else if (!strcmp(name, "open-resp-buffer")) r = f_open_resp_buffer();
    else if (!strcmp(name, "open-resp-status")) r = f_open_resp_status();
    else if (!strcmp(name, "rdma-open")) r = f_rdma_open();
    else if (!strcmp(name, "rdma-write")) r = f_rdma_write();
    else if (!strcmp(name, "rdma-receive")) r = f_rdma_receive(16);
    else if (!strcmp(name, "request-vmc-busy")) r = f_request_vmc_busy();
    else if (!strcmp(name, "request-vmc-errors")) r = f_request_vmc_errors();
    else if (!strcmp(name, "request-vmc-unlisted")) r = f_request_vmc_unlisted();
    else if (!strcmp(name, "signal-oversize")) r = f_signal_oversize();
    else if (!strcmp(name, "rem-buf")) r = f_rem_buf(0);
    else if (!strcmp(name, "rem-buf-last")) r = f_rem_buf(1);
    else if (!strcmp(name, "flood")) r = f_flood(0);
    else if (!strcmp(name, "flood-overflow")) r = f_flood(1);
    else { fail("fault", "unknown fault scenario %s", name); r = 1; }
    kmsg_print();
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: vmctest basic|burst|twohmc|query|restart|bench|watch|stall|kill9|soak|attach|fault NAME [--drc 0xN] [--mtu N] [--count N] [--closed-session] [--no-summary]\n");
        return argc < 2;
    }
    uint32_t drc = 0;
    int count = 500, count_given = 0, summary = 1, closed_session = 0, first = 2;
    const char *fault_name = NULL;
    if (!strcmp(argv[1], "fault") && argc > 2) { fault_name = argv[2]; first = 3; }
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--drc") && i + 1 < argc) drc = strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--mtu") && i + 1 < argc) mtu = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) { count = atoi(argv[++i]); count_given = 1; }
        else if (!strcmp(argv[i], "--no-summary")) summary = 0;
        else if (!strcmp(argv[i], "--closed-session")) closed_session = 1;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    /* alarm() guards blocking reads; no SA_RESTART, so such a read returns EINTR */
    struct sigaction sa = { .sa_handler = on_alarm };
    sigaction(SIGALRM, &sa, NULL);
    if (!strcmp(argv[1], "basic")) basic(drc);
    else if (!strcmp(argv[1], "burst")) burst(count, "vmctest-burst");
    else if (!strcmp(argv[1], "twohmc")) twohmc();
    else if (!strcmp(argv[1], "restart")) restart(closed_session);
    else if (!strcmp(argv[1], "query")) query(drc);
    else if (!strcmp(argv[1], "bench")) bench(count);
    else if (!strcmp(argv[1], "watch")) watch(count);
    else if (!strcmp(argv[1], "stall")) stall(count_given ? count : 2);
    else if (!strcmp(argv[1], "kill9")) kill9(count_given ? count : 20);
    else if (!strcmp(argv[1], "soak")) soak();
    else if (!strcmp(argv[1], "attach")) attach();
    else if (fault_name) fault(fault_name);
    else { fprintf(stderr, "unknown test %s\n", argv[1]); return 2; }
    if (summary) printf("VMCTEST SUMMARY passed=%d failed=%d\n", passed, failed);
    return failed ? 1 : 0;
}
