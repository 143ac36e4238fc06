using VmcBackend.Engine.Handshake;
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
        h.Partition.ResetAdapter();     // the reset task: FREE_CRQ, REG_CRQ, init
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Engine.Session(0).IsOpen, Is.False);
        var g = h.OpenRouterSession("after-reset");
        Assert.That(h.Client.Call(g, RouterOpcode.Echo, 1, [5], out _).ReturnCode, Is.EqualTo(0));
        h.AssertHealthy();
    }

    [Test]
    public void GuestResetStallsWhenTheInitResponseArrivesBeforeInterruptsAreBackOn()
    {
        // ibmvmc_reset_task sends 0xC001 and then calls vio_enable_interrupts without looking at
        // the queue again. A partner that answers before the enable loses the pulse, and the
        // driver sits in crqinit with 0xC002 in its queue until some later interrupt.
        var (h, _) = Reach(Point.RouterOpen);
        h.Device.MoveOutputInHcalls = true;
        h.Partition.ResetAdapter();
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.CrqInit), "stuck: the pulse for 0xC002 was lost");
        Assert.That(h.Device.Queue.Outstanding, Is.EqualTo(1u), "0xC002 sits unconsumed in the guest queue");
        Assert.That(h.Device.Queue.LostPulses, Is.GreaterThan(0));
        // Any later interrupt recovers it (here: the back-end restarts and the front-end writes a transport event).
        h.Device.MoveOutputInHcalls = false;
        h.RestartHypervisor();
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        DriverBug.ExpectedFailure("ibmvmc_reset_task",
            "\"vio_enable_interrupts(to_vio_dev(adapter->dev));\" after sending 0xC001, with no second look at the CRQ (ibmvmc_task re-checks after enabling; the reset task does not)");
    }

    [Test]
    public void TransportEventAfterACloseWritesIntoTheFreedFileSession()
    {
        // Trap 3: ibmvmc_close() frees the file session but hmc->file_session keeps pointing at it;
        // the next transport event (any back-end restart) writes session->valid = 0 into freed memory.
        var h = new Harness();
        var f = h.OpenRouterSession();
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        h.AssertHealthy();
        h.RestartHypervisor();
        h.Client.Settle();
        Assert.That(h.Partition.Violations, Has.Count.EqualTo(1));
        Assert.That(h.Partition.Violations[0], Does.StartWith("trap 3"));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready), "the channel itself recovers");
        DriverBug.ExpectedFailure("trap 3",
            "ibmvmc_close(): \"kfree_sensitive(session);\" leaves hmc->file_session set; ibmvmc_return_hmc(hmc, true) then does \"session->valid = 0;\"");
    }

    [Test]
    public void DeviceResetThenRebootedGuest()
    {
        var (h, _) = Reach(Point.RouterOpen);
        h.Device.MachineReset();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.NoQueue));
        Assert.That(h.Engine.Session(0).IsOpen, Is.False);
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
        // The rebooted guest probes again with a fresh driver instance.
        var p2 = new SimulatedPartition(h.Device);
        Assert.That(p2.Probe(), Is.EqualTo(0));
        var c2 = new PartitionClient(p2, () => h.Device.Run());
        c2.Settle();
        Assert.That(p2.State, Is.EqualTo(DriverState.Ready));
        var f = c2.OpenSession();
        Assert.That(c2.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
        Assert.That(p2.Violations, Is.Empty);
    }

    [Test]
    public void NeverOpenedHmcKeepsItsBufferAcrossTransportEvent()
    {
        // Trap 7: buffers of HMCs that were never opened survive a reset; the engine's re-add
        // then gets INVALID_BUFFER_ID, which it must treat as "the partition still has it".
        var h = new Harness(new VmcLimits { MaxHmcs = 2 }, hmcs: 2);
        h.OpenRouterSession("only-a");
        var engine = h.RestartHypervisor(new VmcLimits { MaxHmcs = 2 });
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(1), Is.EqualTo(1));
        Assert.That(engine.Session(1).PartitionBuffers, Is.EqualTo(1));
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
        Assert.That(h.Engine.Session(0).OutboundQueued, Is.GreaterThan(0));
        h.Partition.Close(f!);
        h.Client.Settle();
        Assert.That(h.Engine.Counters.OutboundDiscarded, Is.GreaterThan(0));
        Assert.That(h.Engine.Session(0).OutboundQueued, Is.EqualTo(0));
        h.AssertHealthy();
    }
}
