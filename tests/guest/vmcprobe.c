// SPDX-License-Identifier: GPL-2.0
/*
 * vmcprobe: raw VMC hypercalls against QEMU's spapr-vmc device, for
 * tests/qemu/guest-checks.sh.  Loaded instead of ibmvmc (it registers the
 * adapter's CRQ itself); prints one "VMCPROBE <name> <value>" line per
 * check.  It stays loaded, doing nothing: busybox's insmod retries a module
 * whose init fails, which would run every check twice.
 *
 *   mode=nobackend  the device has no back-end (vmc-user section 4)
 *   mode=backend    a back-end is connected (tests/qemu/fake_vmcd.py)
 *   mode=hostile    a back-end is connected (vmcd): count= random CRQ entries and
 *                   random H_COPY_RDMA arguments (scripts/boot-test.sh hostile),
 *                   on a queue of its own between two canary pages that are
 *                   checked at the end
 *
 * liobn/riobn: the two LIOBNs of the node's ibm,my-dma-window; the unit
 * address equals the local LIOBN.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <asm/hvcall.h>

static uint liobn, riobn;
static char *mode = "nobackend";
static ulong count = 1000000;
module_param(liobn, uint, 0);
module_param(riobn, uint, 0);
module_param(mode, charp, 0);
module_param(count, ulong, 0);

#define PAGE_4K		0x1000
#define NPAGES		6
/* IOBAs of the pages this module maps in its own TCE window */
#define IOBA_QUEUE	0x0000		/* read/write: the CRQ */
#define IOBA_DATA	0x1000		/* read/write */
#define IOBA_RO		0x2000		/* the device may only read */
#define IOBA_WO		0x3000		/* the device may only write */
#define IOBA_SPAN	0x4000		/* 0x4000, 0x5000: two scattered pages */
#define IOBA_UNMAPPED	0x0ff00000
#define IOBA_OUTSIDE	0x20000000	/* beyond the 256 MiB window */

static void *pages[NPAGES];

static void report(const char *name, long value)
{
	pr_info("VMCPROBE %s %ld\n", name, value);
}

static long put_tce(unsigned long ioba, void *page, unsigned long perm)
{
	return plpar_hcall_norets(H_PUT_TCE, liobn, ioba,
				  page ? (__pa(page) | perm) : 0);
}

static long copy_rdma(unsigned long len, unsigned long sl, unsigned long sa,
		      unsigned long dl, unsigned long da)
{
	return plpar_hcall_norets(H_COPY_RDMA, len, sl, sa, dl, da);
}

static long send_crq(u64 w1, u64 w2)
{
	return plpar_hcall_norets(H_SEND_CRQ, liobn, w1, w2);
}

static long request_vmc(unsigned long *drc)
{
	unsigned long retbuf[PLPAR_HCALL_BUFSIZE] = { 0 };
	long rc = plpar_hcall(H_REQUEST_VMC, retbuf);

	*drc = retbuf[0];
	return rc;
}

/* Argument checks QEMU does itself, with or without a back-end */
static void check_copy_rdma_args(void)
{
	report("bad-liobn", copy_rdma(64, 0xdead, 0, riobn, 0));
	report("both-local", copy_rdma(64, liobn, 0, liobn, IOBA_DATA));
	report("both-remote", copy_rdma(64, riobn, 0, riobn, 0));
	report("src-outside-window", copy_rdma(64, liobn, IOBA_OUTSIDE, riobn, 0));
	report("src-unmapped", copy_rdma(64, liobn, IOBA_UNMAPPED, riobn, 0));
	report("dst-unmapped", copy_rdma(64, riobn, 0, liobn, IOBA_UNMAPPED));
	report("src-not-readable", copy_rdma(64, liobn, IOBA_WO, riobn, 0));
	report("dst-not-writable", copy_rdma(64, riobn, 0, liobn, IOBA_RO));
	report("src-runs-into-unreadable", copy_rdma(2 * PAGE_4K, liobn,
						     IOBA_DATA + 0x800, riobn, 0));
}

static void check_nobackend(void)
{
	unsigned long drc;

	report("nb-reg-crq", plpar_hcall_norets(H_REG_CRQ, liobn, IOBA_QUEUE, PAGE_4K));
	report("nb-send-crq", send_crq(0xC001000000000000ULL, 0));
	report("nb-send-crq-bad", send_crq(0x1200000000000000ULL, 0));
	report("nb-copy-rdma", copy_rdma(64, liobn, IOBA_DATA, riobn, 0));
	report("nb-request-vmc", request_vmc(&drc));
	report("nb-free-crq", plpar_hcall_norets(H_FREE_CRQ, liobn));
	report("nb-send-crq-no-queue", send_crq(0xC001000000000000ULL, 0));
}

static void check_backend(void)
{
	u8 *queue = pages[0], *data = pages[1], *a = pages[4], *b = pages[5];
	unsigned long drc = 0;
	int i;

	report("be-reg-crq", plpar_hcall_norets(H_REG_CRQ, liobn, IOBA_QUEUE, PAGE_4K));
	report("be-send-crq-bad-valid", send_crq(0x1200000000000000ULL, 0));
	report("be-send-crq-bad-init-type", send_crq(0xC005000000000000ULL, 0));
	report("be-send-crq-transport-event", send_crq(0xFF02000000000000ULL, 0));
	report("be-send-crq-init", send_crq(0xC001000000000000ULL, 0));
	/* the back-end answers 0xC0 0x02; QEMU writes it into slot 0 */
	for (i = 0; i < 200 && READ_ONCE(queue[0]) == 0; i++)
		msleep(10);
	rmb();
	report("be-init-response", queue[0] == 0xC0 && queue[1] == 0x02);
	report("be-queue-slot0", queue[0] << 8 | queue[1]);

	for (i = 0; i < 64; i++)
		data[i] = 0x40 + i;
	report("be-copy-to-remote", copy_rdma(64, liobn, IOBA_DATA, riobn, 0x100));
	report("be-copy-from-remote", copy_rdma(64, riobn, 0x100, liobn, IOBA_DATA + 0x800));
	report("be-rdma-roundtrip-differs", memcmp(data, data + 0x800, 64) != 0);

	/* 6 KiB spanning two pages that are not contiguous in guest memory */
	for (i = 0; i < PAGE_4K; i++) {
		a[i] = i * 7;
		b[i] = i * 13;
	}
	report("be-copy-span-to-remote", copy_rdma(0x1800, liobn, IOBA_SPAN + 0x800,
						   riobn, 0x10000));
	memset(a, 0, PAGE_4K);
	memset(b, 0, PAGE_4K);
	report("be-copy-span-from-remote", copy_rdma(0x1800, riobn, 0x10000,
						     liobn, IOBA_SPAN + 0x800));
	for (i = 0; i < PAGE_4K; i++) {
		if ((i >= 0x800 && a[i] != (u8)(i * 7)) ||
		    (i < 0x1000 && b[i] != (u8)(i * 13)))
			break;
	}
	report("be-span-roundtrip-first-bad-byte", i == PAGE_4K ? -1 : i);

	report("be-remote-outside-window", copy_rdma(64, liobn, IOBA_DATA, riobn, 0x2000000));
	report("be-request-vmc", request_vmc(&drc));
	pr_info("VMCPROBE be-drc 0x%lx\n", drc);
	report("be-free-crq", plpar_hcall_norets(H_FREE_CRQ, liobn));
	report("be-send-crq-after-free", send_crq(0xC001000000000000ULL, 0));
}

/*
 * Hostile guest: random CRQ entries (half with the command valid byte 0x80,
 * some init entries 0xC0 01/02, the rest any bytes) and, every 8th, an
 * H_COPY_RDMA with random length, LIOBNs and IOBAs.  The queue is the middle
 * page of three physically contiguous ones; the outer two are canaries, mapped
 * read-only in the TCE window right before and after it, so neither a write
 * through the IOMMU nor one by guest-physical address may land there.  Entries
 * that arrive are consumed the way a driver does (valid byte cleared).
 */
#define IOBA_H_CANARY0	0x10000
#define IOBA_H_QUEUE	0x11000
#define IOBA_H_CANARY1	0x12000
#define IOBA_H_DATA	0x13000
#define CANARY(i)	((u8)(0xA5 ^ (i)))

static unsigned long rand_ioba(void)
{
	switch (get_random_u32() % 4) {
	case 0:
		return get_random_u64();			/* anything */
	case 1:
		return get_random_u32() % 0x20000000;		/* near the windows */
	default:
		return IOBA_H_CANARY0 + get_random_u32() % 0x5000;	/* our pages */
	}
}

static unsigned long rand_liobn(void)
{
	switch (get_random_u32() % 5) {
	case 0:
		return get_random_u32();
	case 1:
	case 2:
		return liobn;
	default:
		return riobn;
	}
}

static void check_hostile(void)
{
	/* four 4 KiB pieces, physically contiguous: canary, queue, canary, data */
	unsigned int order = get_order(4 * PAGE_4K);
	u8 *base = (u8 *)__get_free_pages(GFP_KERNEL | __GFP_ZERO, order);
	u8 *queue, *canary[2];
	unsigned long i, sent = 0, rdma = 0, queue_head = 0, entries = 0, events = 0;
	unsigned long rc_ok = 0, rc_busy = 0, rc_closed = 0, rc_param = 0, rc_other = 0;
	unsigned long rdma_ok = 0, bad = 0;
	long rc;
	int c;

	if (!base) {
		report("hostile-alloc-failed", 1);
		return;
	}
	canary[0] = base;
	queue = base + PAGE_4K;
	canary[1] = base + 2 * PAGE_4K;
	for (c = 0; c < 2; c++)
		for (i = 0; i < PAGE_4K; i++)
			canary[c][i] = CANARY(i + c);
	/* the device may read the canaries (RDMA sources), never write them */
	if (put_tce(IOBA_H_CANARY0, canary[0], 1) || put_tce(IOBA_H_QUEUE, queue, 3) ||
	    put_tce(IOBA_H_CANARY1, canary[1], 1) ||
	    put_tce(IOBA_H_DATA, base + 3 * PAGE_4K, 3)) {
		report("hostile-put-tce-failed", 1);
		goto unmap;
	}
	rc = plpar_hcall_norets(H_REG_CRQ, liobn, IOBA_H_QUEUE, PAGE_4K);
	report("hostile-reg-crq", rc);
	if (rc)
		goto unmap;

	for (i = 0; i < count; i++) {
		u64 w1 = get_random_u64(), w2 = get_random_u64();
		u32 kind = get_random_u32() % 16;

		if (kind < 8)
			w1 = (w1 & 0x00ffffffffffffffULL) | 0x8000000000000000ULL;
		else if (kind == 8)
			w1 = (w1 & 0x0000ffffffffffffULL) |
			     (0xC000000000000000ULL | (1ULL + (w1 & 1)) << 48);
		rc = send_crq(w1, w2);
		sent++;
		if (rc == H_SUCCESS)
			rc_ok++;
		else if (rc == H_BUSY)
			rc_busy++;
		else if (rc == H_CLOSED)
			rc_closed++;
		else if (rc == H_PARAMETER)
			rc_param++;
		else
			rc_other++;

		if (i % 8 == 7) {
			rc = copy_rdma(get_random_u32() % 4 ? get_random_u32() % 0x2000 :
				       get_random_u64() % 0x100000, rand_liobn(),
				       rand_ioba(), rand_liobn(), rand_ioba());
			rdma++;
			rdma_ok += rc == H_SUCCESS;
		}

		/* consume what arrived, in order, like the driver's tasklet */
		while (READ_ONCE(queue[queue_head * 16]) & 0x80) {
			rmb();
			if (queue[queue_head * 16] == 0xFF)
				events++;
			entries++;
			WRITE_ONCE(queue[queue_head * 16], 0);
			queue_head = (queue_head + 1) % (PAGE_4K / 16);
		}
		if (i % 256 == 0)
			cond_resched();
	}
	rc = plpar_hcall_norets(H_FREE_CRQ, liobn);
	report("hostile-free-crq", rc);
unmap:
	put_tce(IOBA_H_CANARY0, NULL, 0);
	put_tce(IOBA_H_QUEUE, NULL, 0);
	put_tce(IOBA_H_CANARY1, NULL, 0);
	put_tce(IOBA_H_DATA, NULL, 0);
	for (c = 0; c < 2; c++)
		for (i = 0; i < PAGE_4K; i++)
			bad += canary[c][i] != CANARY(i + c);
	pr_info("VMCPROBE hostile-sent %lu ok %lu busy %lu closed %lu parameter %lu other %lu\n",
		sent, rc_ok, rc_busy, rc_closed, rc_param, rc_other);
	pr_info("VMCPROBE hostile-rdma %lu accepted %lu\n", rdma, rdma_ok);
	pr_info("VMCPROBE hostile-queue-entries %lu transport-events %lu\n", entries, events);
	report("hostile-canary-bytes-changed", bad);
	free_pages((unsigned long)base, order);
}

static int __init vmcprobe_init(void)
{
	static const unsigned long map[NPAGES][2] = {
		{ IOBA_QUEUE, 3 }, { IOBA_DATA, 3 }, { IOBA_RO, 1 }, { IOBA_WO, 2 },
		{ IOBA_SPAN, 3 }, { IOBA_SPAN + PAGE_4K, 3 },
	};
	int i;

	for (i = 0; i < NPAGES; i++) {
		pages[i] = (void *)get_zeroed_page(GFP_KERNEL);
		if (!pages[i])
			goto out;
	}
	/* the span pages must not be adjacent in guest memory */
	if (__pa(pages[4]) + PAGE_4K == __pa(pages[5]))
		swap(pages[4], pages[5]);
	for (i = 0; i < NPAGES; i++) {
		if (put_tce(map[i][0], pages[i], map[i][1])) {
			report("put-tce-failed", i);
			goto unmap;
		}
	}

	if (!strcmp(mode, "hostile")) {
		check_hostile();
		goto done;
	}
	check_copy_rdma_args();
	if (!strcmp(mode, "backend"))
		check_backend();
	else
		check_nobackend();
done:
	report("done", 0);

unmap:
	for (i = 0; i < NPAGES; i++)
		put_tce(map[i][0], NULL, 0);
out:
	for (i = 0; i < NPAGES; i++) {
		if (pages[i])
			free_page((unsigned long)pages[i]);
	}
	return 0;
}
module_init(vmcprobe_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("raw VMC hypercalls for QEMU's spapr-vmc checks");
