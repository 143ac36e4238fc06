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
 * Messages use the HMC command-router format (32-byte big-endian header).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: vmctest basic|burst|twohmc|query|restart|bench|watch|stall|kill9|soak|attach [--drc 0xN] [--mtu N] [--count N] [--closed-session] [--no-summary]\n");
        return argc < 2;
    }
    uint32_t drc = 0;
    int count = 500, count_given = 0, summary = 1, closed_session = 0;
    for (int i = 2; i < argc; i++) {
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
    else { fprintf(stderr, "unknown test %s\n", argv[1]); return 2; }
    if (summary) printf("VMCTEST SUMMARY passed=%d failed=%d\n", passed, failed);
    return failed ? 1 : 0;
}
