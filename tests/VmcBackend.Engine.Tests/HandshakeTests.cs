using VmcBackend.Testing;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Tests;

public class HandshakeTests
{
    [Test]
    public void GuestInitReachesReadyWithDefaultCapabilities()
    {
        var h = new Harness();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Partition.MaxMtu, Is.EqualTo(4096));
        Assert.That(h.Partition.MaxBufferPoolSize, Is.EqualTo(32));
        Assert.That(h.Partition.MaxHmcIndex, Is.EqualTo(0));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1), "one ADD_BUF per HMC index after capabilities");
        Assert.That(h.Rig.Notifier.Interrupts, Is.GreaterThan(0));
        h.AssertHealthy();
    }

    [Test]
    public void QueryAndRequestVmcReflectTheAdapter()
    {
        var h = new Harness(new VmcLimits { DrcIndex = 0x81000042 }, probe: false);
        Assert.That(h.Partition.Query().HaveVmc, Is.False);
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Partition.RequestVmc(out uint drc), Is.EqualTo(0));
        Assert.That(drc, Is.EqualTo(0x81000042));
        var q = h.Partition.Query();
        Assert.That(q.HaveVmc, Is.True);
        Assert.That(q.State, Is.EqualTo(DriverState.Ready));
        Assert.That(q.DrcIndex, Is.EqualTo(0x81000042));
    }

    [Test]
    public void EngineInitAfterReconnectBringsTheGuestBack()
    {
        var h = new Harness();
        var engine = h.RestartHypervisor();
        h.Client.Settle();
        Assert.That(h.Partition.TransportEvents, Is.EqualTo(1));
        Assert.That(engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        h.AssertHealthy();
    }

    [TestCase(16384, 64, 2, 8192, 16, 2, 8192, 16, 2)]
    [TestCase(4096, 16, 1, 16384, 64, 2, 4096, 16, 1)]
    [TestCase(8192, 32, 2, 4096, 64, 1, 4096, 32, 1)]
    public void CapabilitiesNegotiateTheMinimum(int hvMtu, int hvPool, int hvHmcs, int gMtu, int gPool, int gHmcs, int mtu, int pool, int hmcs)
    {
        var h = new Harness(new VmcLimits { MaxMtu = hvMtu, PoolSize = hvPool, MaxHmcs = hvHmcs }, gMtu, gPool, gHmcs);
        Assert.That((h.Engine.Mtu, h.Engine.PoolSize, h.Engine.HmcCount), Is.EqualTo((mtu, pool, hmcs)));
        Assert.That((h.Partition.MaxMtu, h.Partition.MaxBufferPoolSize, h.Partition.MaxHmcIndex), Is.EqualTo((mtu, pool, (long)hmcs - 1)));
        for (int i = 0; i < hmcs; i++) Assert.That(h.Partition.ValidBufferCount(i), Is.EqualTo(1));
        h.AssertHealthy();
    }

    [Test]
    public void MajorVersionMismatchFailsBothSidesWithoutBuffers()
    {
        var h = new Harness(probe: false);
        h.Partition.CapVersion = 0x0201;
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Failed));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Failed));
        Assert.That(h.Partition.SeenEntryKinds, Does.Not.Contain(0x8004), "no ADD_BUF after a failed negotiation");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, new byte[32]), Is.EqualTo(-Errno.EIO));
    }

    [Test]
    public void MinorVersionDifferenceIsAccepted()
    {
        var h = new Harness(probe: false);
        h.Partition.CapVersion = 0x0107;
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
    }

    [Test]
    public void SendBeforeRegisterIsClosedAndGarbageValidByteIsRefused()
    {
        var rig = new InProcessRig();
        Assert.That(rig.Engine.SendCrq(new byte[16]), Is.EqualTo(Wire.Hcall.HcallReturn.Closed));
        var h = new Harness();
        var e = new byte[16];
        e[0] = 0x42;
        Assert.That(h.Engine.SendCrq(e), Is.EqualTo(Wire.Hcall.HcallReturn.Parameter));
        e[0] = CrqValid.Transport;
        Assert.That(h.Engine.SendCrq(e), Is.EqualTo(Wire.Hcall.HcallReturn.Parameter), "only the hypervisor sends transport events");
        Assert.That(h.Engine.SendCrq(new byte[8]), Is.EqualTo(Wire.Hcall.HcallReturn.Parameter));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
    }

    [Test]
    public void CapabilitiesBeforeInitAreStillAnswered()
    {
        // A guest that skips init: the engine answers CAP in any registered state.
        var h = new Harness();
        var caps = new byte[16];
        new CapabilitiesEntry(VmcMessageType.Capabilities, 0, 1, 32, 4096, 4096, 0x0101).Write(caps);
        Assert.That(h.Engine.SendCrq(caps), Is.EqualTo(0));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        h.AssertHealthy();
    }

    [Test]
    public void LimitsOutsideTheProtocolAreRejectedAtConstruction()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new InProcessRig(new VmcLimits { MaxHmcs = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new InProcessRig(new VmcLimits { MaxMtu = 100 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new InProcessRig(new VmcLimits { PoolSize = 65 }));
    }
}
