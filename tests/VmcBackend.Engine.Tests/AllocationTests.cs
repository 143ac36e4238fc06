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
}
