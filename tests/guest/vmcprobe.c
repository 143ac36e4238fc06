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
 *
 * liobn/riobn: the two LIOBNs of the node's ibm,my-dma-window; the unit
 * address equals the local LIOBN.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <asm/hvcall.h>

static uint liobn, riobn;
static char *mode = "nobackend";
module_param(liobn, uint, 0);
module_param(riobn, uint, 0);
module_param(mode, charp, 0);

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

	check_copy_rdma_args();
	if (!strcmp(mode, "backend"))
		check_backend();
	else
		check_nobackend();
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
