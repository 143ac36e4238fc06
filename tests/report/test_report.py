"""Unit tests of scripts/lib/report.py on hand-made record groups (the shapes vmcd's traces have:
docs/control.md section 4). Run: python3 -m unittest tests/report/test_report.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "lib"))
import report  # noqa: E402


def rec(type_, **kw):
    r = {"t": 1.0, "vm": "vm1", "type": type_, "text": kw.pop("text", type_)}
    r.update(kw)
    return r


RECONNECT = [rec("VM_START", name="vm1", max_mtu=4096, pool_size=32, max_hmcs=1, joined=False),
             rec("REG_CRQ", entries=4096, reconnect=True, text="H_REG_CRQ 4096 entries (reconnect)"),
             rec("POST", msg="INIT"),                       # an output of the REG_CRQ group, before its RESULT
             rec("RESULT", rc=0, rc_name="H_SUCCESS"),
             rec("SUBMIT", msg="INIT_RESP"),
             rec("COPY_RDMA", direction="guest->hv", length=64),
             rec("MEMORY", write=False, ok=True),
             rec("RESULT", rc=0, rc_name="H_SUCCESS"),
             rec("COPY_RDMA", direction="hv->guest", length=64),
             rec("RESULT", rc=-4, rc_name="H_PARAMETER")]
POOL = [rec("POST", msg="ADD_BUF", hmc=0, session=1, buffer=b, owner="partition") for b in range(1, 32)]


class AnalyseTests(unittest.TestCase):
    def test_an_hcall_keeps_its_result_across_outputs_of_its_group(self):
        msgs, hcalls, states, faults = report.analyse(RECONNECT)
        self.assertEqual(hcalls[("H_REG_CRQ", "H_SUCCESS")], 1)
        self.assertIn("crq-reconnect", states)
        self.assertEqual(msgs["INIT"], [0, 1])
        self.assertEqual(msgs["INIT_RESP"], [1, 0])
        self.assertEqual(hcalls[("H_COPY_RDMA guest->hv", "H_SUCCESS")], 1)
        self.assertEqual(hcalls[("H_COPY_RDMA hv->guest", "H_PARAMETER")], 1)
        self.assertIn("hcall-error", states)
        self.assertIn("rdma-both", states)
        self.assertNotIn("caps", states)

    def test_a_record_type_of_the_fault_range_is_a_fault(self):
        _, _, states, faults = report.analyse([rec("type 0x30", text="drop the next 2 entries")])
        self.assertIn("fault-record", states)
        self.assertEqual(faults, ["drop the next 2 entries"])


class DiagramTests(unittest.TestCase):
    def test_rows(self):
        rows = report.diagram_rows(RECONNECT)
        labels = [r.label for r in rows]
        self.assertEqual(labels[1], "H_REG_CRQ 4096 entries (reconnect) = H_SUCCESS")   # its rc, though INIT came between
        self.assertEqual(rows[2].kind, "h2g")
        self.assertEqual(rows[-1].cls, "bad")
        self.assertIn("H_PARAMETER", labels[-1])

    def test_a_pool_of_add_buf_is_one_row(self):
        rows = report.diagram_rows(POOL)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0].label, "ADD_BUF hmc 0 s1 (partition) x31 buffers 1..31")

    def test_long_traces_are_capped(self):
        many = [rec("SUBMIT", msg="SIGNAL", hmc=0, session=1, buffer=i % 2, length=32) for i in range(100)]
        svg, n = report.svg_diagram(many, max_rows=60)
        self.assertEqual(n, 100)
        self.assertEqual(svg.count("<line") - 2, 60)           # two lifelines, 60 arrows
        self.assertIn("40 more rows not drawn", svg)

    def test_labels_are_escaped(self):
        svg, _ = report.svg_diagram([rec("DETACH", text="HMC 0 detached (<eof> & gone)")])
        self.assertIn("&lt;eof&gt; &amp; gone", svg)


class NameTests(unittest.TestCase):
    def test_result_names_and_trace_stems(self):
        self.assertEqual(report.split_name("6.1/faults/uaf-after-close/kernel-clean"), ("6.1", "faults/uaf-after-close", "kernel-clean"))
        self.assertEqual(report.split_name("6.12/reset/boot2/echo"), ("6.12", "reset", "boot2/echo"))
        self.assertEqual(report.scenario_of_stem("fault-uaf-after-close"), "faults/uaf-after-close")


if __name__ == "__main__":
    unittest.main()
