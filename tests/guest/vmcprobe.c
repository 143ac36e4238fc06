// SPDX-License-Identifier: GPL-2.0
/*
 * vmcprobe.ko: raw H_COPY_RDMA calls with arguments the spapr-vmc device itself must reject,
 * each rc printed as "VMCPROBE <name> <rc>" (tests/qemu/guest-checks.sh reads them). The guest's
 * /init loads it with vmc.probe=1, passing the LIOBNs from ibm,my-dma-window. Loading always
 * fails with -ENODEV: there is nothing to keep loaded.
 */
#include <linux/module.h>
#include <asm/hvcall.h>

static uint liobn, riobn;
module_param(liobn, uint, 0);
module_param(riobn, uint, 0);

static int __init vmcprobe_init(void)
{
	pr_info("VMCPROBE bad-liobn %ld\n", plpar_hcall_norets(H_COPY_RDMA, 64, 0xdead, 0, riobn, 0));
	pr_info("VMCPROBE both-local %ld\n", plpar_hcall_norets(H_COPY_RDMA, 64, liobn, 0, liobn, 0));
	pr_info("VMCPROBE src-outside-window %ld\n",
		plpar_hcall_norets(H_COPY_RDMA, 64, liobn, 0x20000000, riobn, 0));
	pr_info("VMCPROBE src-unmapped %ld\n",
		plpar_hcall_norets(H_COPY_RDMA, 64, liobn, 0x0ff00000, riobn, 0));
	pr_info("VMCPROBE dst-unmapped %ld\n",
		plpar_hcall_norets(H_COPY_RDMA, 64, riobn, 0, liobn, 0x0ff00000));
	return -ENODEV;
}
module_init(vmcprobe_init);
MODULE_DESCRIPTION("VmcBackend test probe: H_COPY_RDMA argument checks");
MODULE_LICENSE("GPL");
