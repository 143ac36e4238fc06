using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Wire.Hcall;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class BufferTests
{
    [Test]
    public void ExhaustedPoolDeliversEveryReplyToAReaderThatOnlyReads()
    {
        // A client writes until write() says EBUSY, then only reads. The hypervisor may not deliver
        // the last reply at once (pool-1 unread bound, trap 12); it must not wait for another write
        // either: it learns that the client read (REM_BUF gives a delivered buffer back) and sends it.
        var h = new Harness(pool: 16, limits: new VmcLimits { PoolSize = 16 });
        var f = h.OpenRouterSession();
        int pool = h.Partition.MaxBufferPoolSize;
        Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(pool), "no buffer kept back from write()");
        uint sent = 0;
        while (h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, sent, BitConverter.GetBytes(sent))) > 0) { sent++; h.Client.Settle(); }
        Assert.That(sent, Is.EqualTo((uint)pool), "every pool buffer carried one request");
        Assert.That(h.Partition.Write(f, new byte[40]), Is.EqualTo(-Errno.EBUSY));
        Assert.That(h.Engine.Session(0).OutboundQueued, Is.EqualTo(1), "the reply that would fill the read ring waits");
        h.AssertHealthy();
        var buf = new byte[4096];
        for (uint expect = 0; expect < sent; expect++)
        {
            int n = h.Partition.Read(f, buf);
            if (n == -Errno.EAGAIN)
            {
                h.Wait(TimeSpan.FromMilliseconds(100));    // the hypervisor's retry after NO_BUFFER
                n = h.Partition.Read(f, buf);
            }
            Assert.That(n, Is.EqualTo(36), $"reply {expect}");
            Assert.That(RouterClient.Parse(buf.AsSpan(0, n))!.Value.Token, Is.EqualTo(expect));
            Assert.That(BitConverter.ToUInt32(buf, 32), Is.EqualTo(expect));
        }
        Assert.That(h.Engine.Session(0).OutboundQueued, Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(pool), "every buffer back in write()'s pool");
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
        Assert.That(h.Engine.Session(0).PartitionBuffers, Is.EqualTo(31));
        h.AssertHealthy();
    }

    [Test]
    public void RemoveBufferNeverAsksForThePartitionsLastBuffer()
    {
        // ibmvmc.c rem_buffer: "it is an interface error for the hypervisor to attempt to remove
        // the management partition's last buffer". After capabilities and after a close the
        // partition holds one buffer per HMC; with two, one REM_BUF may be in flight, not two.
        var h = new Harness();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
        Assert.That(h.Engine.RequestRemoveBuffer(0), Is.False, "one buffer: no REM_BUF");
        var f = h.OpenRouterSession();
        h.Partition.Close(f);
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
        Assert.That(h.Engine.RequestRemoveBuffer(0), Is.False, "one buffer after CLOSE: no REM_BUF");
        Assert.That(h.Engine.RequestRemoveBuffer(5), Is.False, "no such HMC index");
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
        Assert.That(h.PayloadsSeen().Count(p => p.Type == 0x05), Is.EqualTo(0), "no REM_BUF reached the guest");

        var g = h.OpenRouterSession("again");
        int removed = 0;
        while (h.Engine.RequestRemoveBuffer(0)) removed++;
        Assert.That(removed, Is.EqualTo(31), "32 buffers: 31 may go, one stays");
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
        Assert.That(h.Client.Call(g, RouterOpcode.Echo, 5, [5], out _).ReturnCode, Is.EqualTo(0), "the last buffer still carries traffic");
        h.AssertHealthy();
    }

    [Test]
    public void RdmaOutsideBuffersThePartitionHoldsIsRefused()
    {
        var received = new HostEndpoint();
        var h = new Harness(pool: 16, handlers: _ => received);     // the engine offers 32, the guest 16
        var f = h.Client.OpenSession();
        var seg = new[] { new GuestSegment(0x1000, 64) };
        var e = h.Engine;
        uint b0 = e.BufferIoba(0, 0);
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0, 64, seg), Is.EqualTo(HcallReturn.Success));
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, e.Config.RemoteWindowSize, 64, seg), Is.EqualTo(HcallReturn.RemoteParm));
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0 + 4090, 64, seg), Is.EqualTo(HcallReturn.Permission), "crosses the buffer end");
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0, 65, seg), Is.EqualTo(HcallReturn.Parameter), "segments do not add up");
        Assert.That(e.CopyRdma((RdmaDirection)7, b0, 64, seg), Is.EqualTo(HcallReturn.Parameter));
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0, ulong.MaxValue, [new(0, ulong.MaxValue), new(0, ulong.MaxValue)]), Is.EqualTo(HcallReturn.Parameter), "lengths that overflow do not add up");
        var outside = new[] { new GuestSegment(ulong.MaxValue - 10, 64) };
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0, 64, outside), Is.EqualTo(HcallReturn.SourceParm));
        Assert.That(e.CopyRdma(RdmaDirection.RemoteToLocal, b0, 64, outside), Is.EqualTo(HcallReturn.DestParm));
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, 0, 0, []), Is.EqualTo(HcallReturn.Success), "zero-length copy is a no-op");
        // A write gives buffer 0 to the hypervisor; the handler does not answer, so it stays the
        // hypervisor's: the partition may no longer copy to or from it.
        Assert.That(h.Partition.Write(f, new byte[40]), Is.EqualTo(40));
        h.Client.Settle();
        Assert.That(received.Received, Has.Count.EqualTo(1));
        Assert.That(h.Engine.Session(0).HypervisorBuffers, Is.EqualTo(1));
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, b0, 64, seg), Is.EqualTo(HcallReturn.Permission), "written on: the hypervisor's now");
        Assert.That(e.CopyRdma(RdmaDirection.RemoteToLocal, b0, 64, seg), Is.EqualTo(HcallReturn.Permission));
        uint b1 = e.BufferIoba(0, 1);
        Assert.That(e.CopyRdma(RdmaDirection.RemoteToLocal, b1, 64, seg), Is.EqualTo(HcallReturn.Success), "buffer 1 is still the partition's");
        Assert.That(e.CopyRdma(RdmaDirection.LocalToRemote, e.BufferIoba(0, 20), 64, seg), Is.EqualTo(HcallReturn.Permission), "inside the window, beyond the negotiated pool");
    }
}
