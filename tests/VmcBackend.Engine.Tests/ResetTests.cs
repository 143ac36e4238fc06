using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class ResetTests
{
    public enum Point { BeforeCapabilities, ReadyNoSession, Opening, Open, RouterOpen, Exhausted }

    private static (Harness h, SimulatedPartition.VmcFile? f) Reach(Point point)
    {
        var h = new Harness(probe: point != Point.BeforeCapabilities, pool: 16, limits: new VmcLimits { PoolSize = 16 });
        SimulatedPartition.VmcFile? f = null;
        switch (point)
        {
            case Point.BeforeCapabilities:
                h.Partition.Probe();         // init sent, answers not yet processed
                break;
            case Point.Opening:
                f = h.Partition.Open();
                Assert.That(h.Partition.SetHmcId(f, new byte[32]), Is.EqualTo(0));  // OPEN_RESP not yet processed
                break;
            case Point.Open:
                f = h.Client.OpenSession();
                break;
            case Point.RouterOpen:
                f = h.OpenRouterSession();
                break;
            case Point.Exhausted:
                f = h.OpenRouterSession();
                while (h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, 1, [1])) > 0) h.Client.Settle();
                break;
        }
        return (h, f);
    }

    [Test]
    public void TransportEventInEveryStateRecovers([Values] Point point)
    {
        var (h, f) = Reach(point);
        var engine = h.RestartHypervisor();
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(engine.State, Is.EqualTo(AdapterState.Ready));
        if (f != null && point != Point.Opening)
            Assert.That(h.Partition.Read(f, new byte[64]), Is.EqualTo(-Errno.EBADFD), "readers see EBADFD after a transport event");
        var g = h.OpenRouterSession("after");
        Assert.That(h.Client.Call(g, RouterOpcode.Echo, 9, [9, 9], out var resp).ReturnCode, Is.EqualTo(0));
        Assert.That(resp[32..], Is.EqualTo(new byte[] { 9, 9 }));
        h.AssertHealthy();
    }

    [Test]
    public void GuestResetMidSessionRecovers([Values(Point.RouterOpen, Point.Exhausted, Point.ReadyNoSession)] Point point)
    {
        var (h, _) = Reach(point);
        h.Partition.ResetAdapter();     // FREE_CRQ, REG_CRQ, init
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Engine.Hmc(0).IsOpen, Is.False);
        var g = h.OpenRouterSession("after-reset");
        Assert.That(h.Client.Call(g, RouterOpcode.Echo, 1, [5], out _).ReturnCode, Is.EqualTo(0));
        h.AssertHealthy();
    }

    [Test]
    public void DeviceResetThenRebootedGuest()
    {
        var (h, _) = Reach(Point.RouterOpen);
        h.Engine.Reset();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.NoQueue));
        Assert.That(h.Engine.Hmc(0).IsOpen, Is.False);
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
        // The rebooted guest probes again with a fresh driver instance.
        var p2 = new SimulatedPartition(h.Rig.Platform);
        Assert.That(p2.Probe(), Is.EqualTo(0));
        var c2 = new PartitionClient(p2, () => h.Engine.Pump());
        c2.Settle();
        Assert.That(p2.State, Is.EqualTo(DriverState.Ready));
        var f = c2.OpenSession();
        Assert.That(c2.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
    }

    [Test]
    public void NeverOpenedHmcKeepsItsBufferAcrossTransportEvent()
    {
        // Driver quirk: buffers of HMCs that were never opened survive a reset; the engine's re-add
        // then gets INVALID_BUFFER_ID, which it must treat as "the partition still has it".
        var h = new Harness(new VmcLimits { MaxHmcs = 2 }, hmcs: 2);
        h.OpenRouterSession("only-a");
        var engine = h.RestartHypervisor(new VmcLimits { MaxHmcs = 2 });
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(1), Is.EqualTo(1));
        Assert.That(engine.Hmc(1).Buffers[0].State, Is.EqualTo(Buffers.BufferState.Partition));
        var a = h.OpenRouterSession("a2");
        var b = h.OpenRouterSession("b2");
        Assert.That(h.Client.Call(b, RouterOpcode.Echo, 4, [4], out _).ReturnCode, Is.EqualTo(0));
        GC.KeepAlive(a);
        h.AssertHealthy();
    }

    [Test]
    public void CloseWhileRepliesAreQueuedDiscardsThemLoudly()
    {
        var (h, f) = Reach(Point.Exhausted);
        Assert.That(h.Engine.Hmc(0).OutboundCount, Is.GreaterThan(0));
        h.Partition.Close(f!);
        h.Client.Settle();
        Assert.That(h.Engine.Counters.OutboundDiscarded, Is.GreaterThan(0));
        Assert.That(h.Engine.Hmc(0).OutboundCount, Is.EqualTo(0));
        h.AssertHealthy();
    }
}
