using VmcBackend.Control.Replay;
using VmcBackend.Control.Trace;

namespace VmcBackend.Control.Tests;

/// <summary>
/// Regression tests made from real driver traffic: every trace under tests/traces/ (recorded by
/// scripts/boot-test.sh's trace and attach scenarios with TRACE_DIR, from the upstream ibmvmc driver
/// of each kernel of the matrix) replays against today's engine with every output identical, and a
/// one-byte change of a recorded hypervisor entry is caught. A change of the engine that changes
/// what the driver sees fails here; if the change is meant, record the traces again.
/// </summary>
public class RecordedTraceTests
{
    private static string TracesDir()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "VmcBackend.sln"))) return Path.Combine(d.FullName, "tests", "traces");
        throw new DirectoryNotFoundException("no VmcBackend.sln above the test directory: where is tests/traces?");
    }

    public static IEnumerable<string> Traces() =>
        Directory.Exists(TracesDir())
            ? Directory.GetFiles(TracesDir(), "*.vmctrace*").Select(Path.GetFileName).Order(StringComparer.Ordinal)!
            : [];

    [Test]
    public void EveryKernelAndScenarioHasATrace()
    {
        var names = Traces().ToList();
        foreach (var k in new[] { "6.1", "6.12" })
            foreach (var sc in new[] { "trace", "attach" })
                Assert.That(names, Has.Some.StartsWith($"{k}-{sc}.vmctrace"), $"tests/traces has no {k}-{sc} trace (scripts/boot-test.sh with TRACE_DIR records it)");
    }

    [TestCaseSource(nameof(Traces))]
    public void ReplaysIdentically(string name)
    {
        var (header, records) = TraceReader.ReadFile(Path.Combine(TracesDir(), name));
        Assert.That(header.Version, Is.EqualTo(TraceFormat.Version));
        var start = records.Where(r => r.Type == RecordType.VmStart).ToList();
        Assert.That(start, Has.Count.EqualTo(1), "one VM per recorded boot");
        Assert.That(start[0].Flags & (byte)VmStartFlags.Joined, Is.Zero, "recorded from the VM's first call");
        Assert.That(records.Count(r => r.Type == RecordType.Message), Is.GreaterThan(20), "router traffic in the recording");
        Assert.That(records.Count(r => r.Type == RecordType.CopyRdma), Is.GreaterThan(20), "H_COPY_RDMA in the recording");
        if (name.Contains("-attach."))
        {
            Assert.That(records.Count(r => r.Type == RecordType.Attach), Is.EqualTo(1), "the attach");
            Assert.That(records.Count(r => r.Type == RecordType.Detach), Is.EqualTo(1), "the detach");
            Assert.That(records.Count(r => r.Type == RecordType.HostSend), Is.GreaterThan(5), "the attached program's messages, its unsolicited one among them");
        }
        var result = Replayer.Replay(header, records);
        Assert.That(result, Has.Count.EqualTo(1));
        Assert.That(result[0].Divergence, Is.Null, $"{name} diverged");
        Assert.That(result[0].Inputs, Is.GreaterThan(50));
        TestContext.Out.WriteLine($"{name}: {result[0].Inputs} inputs, {result[0].Records} records, identical");
    }

    [TestCaseSource(nameof(Traces))]
    public void ATamperedCopyDiverges(string name)
    {
        var (header, records) = TraceReader.ReadFile(Path.Combine(TracesDir(), name));
        int at = records.Select((r, i) => (r, i)).Where(x => x.r.Type == RecordType.Post).Skip(9).First().i;
        var bad = records[at];
        var payload = (byte[])bad.Payload.Clone();
        payload[6] ^= 0x01;
        records[at] = new TraceRecord(bad.Type, bad.Flags, bad.Vm, bad.TimeNs, payload, bad.Offset, bad.Index);
        var result = Replayer.Replay(header, records);
        Assert.That(result[0].Divergence, Does.Contain($"diverges at record {bad.Index}").And.Contain("recorded").And.Contain("replayed"));
    }
}
