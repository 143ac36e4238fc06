using VmcBackend.Engine.Buffers;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class BufferTests
{
    [Test]
    public void ExhaustionQueuesRepliesAndRecoversWithoutLoss()
    {
        // The hypervisor cannot see read(): a reply SIGNALled back stays 'possibly unread' until the
        // partition writes on that buffer again, so with every buffer outstanding one reply waits for the next write.
        var h = new Harness(pool: 16, limits: new VmcLimits { PoolSize = 16 });
        var f = h.OpenRouterSession();
        int pool = h.Partition.MaxBufferPoolSize;
        // Write until the driver has no free buffer, reading nothing.
        uint sent = 0;
        while (h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, sent, BitConverter.GetBytes(sent))) > 0) { sent++; h.Client.Settle(); }
        Assert.That(sent, Is.EqualTo((uint)pool), "every pool buffer carried one request");
        Assert.That(h.Partition.Write(f, new byte[40]), Is.EqualTo(-Errno.EBUSY));
        Assert.That(h.Engine.Hmc(0).OutboundCount, Is.EqualTo(1), "the reply that would fill the read ring waits");
        h.AssertHealthy();
        // Read everything back, writing again as buffers free up: all replies arrive, in order.
        var buf = new byte[4096];
        uint expect = 0, total = sent + 20;
        while (expect < total)
        {
            int n = h.Partition.Read(f, buf);
            if (n == -Errno.EAGAIN)
            {
                // The last reply is held (pool-1 unread bound) until the partition writes again: one write past the total releases it.
                Assert.That(sent, Is.LessThanOrEqualTo(total), "nothing left to read but replies are missing");
                Assert.That(h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, sent, BitConverter.GetBytes(sent))), Is.GreaterThan(0));
                sent++;
                h.Client.Settle();
                continue;
            }
            Assert.That(n, Is.EqualTo(36));
            Assert.That(RouterClient.Parse(buf.AsSpan(0, n))!.Value.Token, Is.EqualTo(expect));
            Assert.That(BitConverter.ToUInt32(buf, 32), Is.EqualTo(expect));
            expect++;
            h.AssertHealthy();
        }
        h.AssertHealthy();
    }

    [Test]
    public void RemoveBufferTakesAFreeOne()
    {
        var h = new Harness();
        h.OpenRouterSession();
        Assert.That(h.Engine.RequestRemoveBuffer(0), Is.True);
        h.Client.Settle();
        Assert.That(h.Engine.Counters.BuffersRemoved, Is.EqualTo(1));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(31));
        Assert.That(h.Engine.Hmc(0).Count(BufferState.Unallocated, 32), Is.EqualTo(1));
        h.AssertHealthy();
    }

    [Test]
    public void RemoveBufferWithoutAFreeOneChangesNothing()
    {
        var h = new Harness(pool: 16, limits: new VmcLimits { PoolSize = 16 });
        var f = h.OpenRouterSession();
        while (h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, 1, [1])) > 0) h.Client.Settle();
        int partitionOwned = h.Engine.Hmc(0).Count(BufferState.Partition, 16);
        Assert.That(h.Engine.RequestRemoveBuffer(0), Is.True);
        h.Client.Settle();
        Assert.That(h.Engine.Counters.BuffersRemoved, Is.EqualTo(0));
        Assert.That(h.Engine.Hmc(0).Count(BufferState.Partition, 16), Is.EqualTo(partitionOwned));
        Assert.That(h.Engine.RequestRemoveBuffer(5), Is.False, "no such HMC index");
        h.AssertHealthy();
    }

    [Test]
    public void RdmaOutsideOwnedBuffersIsRefused()
    {
        var h = new Harness();
        h.OpenRouterSession();
        var seg = new[] { new Memory.GuestSegment(0x1000, 64) };
        uint b0 = h.Engine.BufferIoba(0, 0);
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, b0, 64, seg), Is.EqualTo(0));
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, h.Engine.RemoteWindowSize, 64, seg), Is.EqualTo(Wire.Hcall.HcallReturn.RemoteParm));
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, b0 + 4090, 64, seg), Is.EqualTo(Wire.Hcall.HcallReturn.Permission), "crosses the buffer end");
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, b0, 65, seg), Is.EqualTo(Wire.Hcall.HcallReturn.Parameter), "segments do not add up");
        Assert.That(h.Engine.CopyRdma((RdmaDirection)7, b0, 64, seg), Is.EqualTo(Wire.Hcall.HcallReturn.Parameter));
        var outside = new[] { new Memory.GuestSegment(ulong.MaxValue - 10, 64) };
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, b0, 64, outside), Is.EqualTo(Wire.Hcall.HcallReturn.SourceParm));
        Assert.That(h.Engine.CopyRdma(RdmaDirection.RemoteToLocal, b0, 64, outside), Is.EqualTo(Wire.Hcall.HcallReturn.DestParm));
        // Give buffer 0 to the hypervisor (a write), then the partition may not touch it.
        var f = h.Partition.Open();
        Assert.That(h.Engine.CopyRdma(RdmaDirection.LocalToRemote, 0, 0, []), Is.EqualTo(0), "zero-length copy is a no-op");
        GC.KeepAlive(f);
    }

    [Test]
    public void RdmaOnAHypervisorHeldBufferIsAPermissionError()
    {
        var h = new Harness(pool: 16, limits: new VmcLimits { PoolSize = 16 });
        var f = h.OpenRouterSession();
        while (h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, 1, [1])) > 0) h.Client.Settle();
        int held = h.Engine.Hmc(0).FindHypervisorBuffer(16);
        Assert.That(held, Is.GreaterThanOrEqualTo(0));
        var seg = new[] { new Memory.GuestSegment(0x1000, 16) };
        Assert.That(h.Engine.CopyRdma(RdmaDirection.RemoteToLocal, h.Engine.BufferIoba(0, held), 16, seg), Is.EqualTo(Wire.Hcall.HcallReturn.Permission));
    }
}
