using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class AllocationTests
{
    [Test]
    public void EchoPathAllocatesNothingInSteadyState()
    {
        var h = new Harness();
        h.Partition.KeepLog = false;
        var f = h.OpenRouterSession();
        var request = new byte[1024];
        var reply = new byte[4096];
        int len = RouterClient.Build(request, RouterOpcode.Echo, 1, new byte[1024 - 32]);
        void Echo()
        {
            if (h.Partition.Write(f, request.AsSpan(0, len)) != len) throw new AssertionException("write failed");
            h.Client.Settle();
            if (h.Partition.Read(f, reply) != len) throw new AssertionException("read failed");
        }
        for (int i = 0; i < 1000; i++) Echo();       // warm-up (JIT, tiering)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) Echo();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Out.WriteLine($"managed bytes allocated over 10,000 echoes (engine, front-end model and partition): {allocated}");
        Assert.That(allocated, Is.EqualTo(0));
        Assert.That(h.Engine.Counters.MessagesIn, Is.EqualTo(11_001));
    }

    [Test]
    public void DroppedEntriesAllocateNothing()
    {
        // A hostile guest floods entries the engine drops: counting them must not cost the GC anything.
        var h = new Harness();
        h.OpenRouterSession();
        var engine = h.Engine;
        var rng = new Random(5);
        var entries = new byte[64][];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = new byte[16];
            rng.NextBytes(entries[i]);
            entries[i][0] = (byte)(i % 3 == 0 ? 0x42 : 0x80);
            entries[i][1] = (byte)(i % 2 == 0 ? 0x06 : 0x84);     // SIGNAL / ADD_BUF_RESP with garbage ids and sessions
            entries[i][4] = 0xEE;
        }
        for (int i = 0; i < 1000; i++) engine.SubmitEntry(entries[i % 64]);
        long dropped = engine.Counters.Dropped;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) engine.SubmitEntry(entries[i % 64]);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Out.WriteLine($"managed bytes allocated over 10,000 dropped entries: {allocated}");
        Assert.That(engine.Counters.Dropped - dropped, Is.EqualTo(10_000));
        Assert.That(allocated, Is.EqualTo(0));
    }

    [TestCase(4096, 32, 1)]
    [TestCase(16384, 64, 2)]
    public void AnEngineCostsLittleMoreThanItsRemoteWindow(int mtu, int pool, int hmcs)
    {
        // One engine per connected VM: the buffers the guest RDMAs into are needed; the outbound
        // message rings are made only when a message has to wait.
        var limits = new VmcLimits { MaxMtu = mtu, PoolSize = pool, MaxHmcs = hmcs };
        var factory = VmcEngine.Factory(limits);
        var frontEnd = new Testing.FrontEnd.SpaprVmcModel(new ArrayGuestMemory(4096), 4096);
        frontEnd.Connect(factory);                  // warm-up
        long before = GC.GetAllocatedBytesForCurrentThread();
        var engine = (VmcEngine)frontEnd.Connect(factory);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        ulong window = engine.Config.RemoteWindowSize;
        TestContext.Out.WriteLine($"MTU {mtu}, pool {pool}, {hmcs} HMC(s): {bytes} bytes per engine, remote window {window}");
        Assert.That((ulong)bytes, Is.LessThan(window + 64 * 1024));
    }
}
