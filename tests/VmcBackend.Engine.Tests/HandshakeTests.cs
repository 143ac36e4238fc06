using VmcBackend.Engine.Handshake;
using VmcBackend.Testing;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;

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
        Assert.That(h.Partition.MaxHmcIndex, Is.EqualTo(0u));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1), "one ADD_BUF per HMC index after capabilities");
        Assert.That(h.Device.Queue.Interrupts, Is.GreaterThan(0));
        var first = h.PayloadsSeen()[0];
        Assert.That((first.Type, first.Status), Is.EqualTo(((byte)0x81, (byte)0)), "CAP_RESP with status 0 first");
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
        Assert.That(q.State, Is.EqualTo((int)DriverState.Ready));
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

    [Test]
    public void BackEndAbsentAtProbeStartsTheHandshakeWhenItConnects()
    {
        // QEMU starts the guest before vmcd: REG_CRQ succeeds, the guest's init gets H_CLOSED; the
        // back-end that connects later gets REG_CRQ with RECONNECT and sends the init itself.
        var h = new Harness(probe: false);
        h.Device.Disconnect();
        Assert.That(h.Partition.Probe(), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.CrqInit));
        h.Device.Connect(h.Rig.Factory);
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        h.AssertHealthy();
    }

    [TestCase(16384, 64, 2, 8192, 16, 2, 8192, 16, 2)]
    [TestCase(4096, 16, 1, 16384, 64, 2, 4096, 16, 1)]
    [TestCase(8192, 32, 2, 4096, 64, 1, 4096, 32, 1)]
    public void CapabilitiesNegotiateTheMinimum(int hvMtu, int hvPool, int hvHmcs, int gMtu, int gPool, int gHmcs, int mtu, int pool, int hmcs)
    {
        var h = new Harness(new VmcLimits { MaxMtu = hvMtu, PoolSize = hvPool, MaxHmcs = hvHmcs }, gMtu, gPool, gHmcs);
        Assert.That((h.Engine.Mtu, h.Engine.PoolSize, h.Engine.HmcCount), Is.EqualTo((mtu, pool, hmcs)));
        Assert.That((h.Partition.MaxMtu, h.Partition.MaxBufferPoolSize, h.Partition.MaxHmcIndex), Is.EqualTo((mtu, pool, (uint)hmcs - 1)));
        for (int i = 0; i < hmcs; i++) Assert.That(h.Partition.ValidBufferCount(i), Is.EqualTo(1));
        h.AssertHealthy();
    }

    [Test]
    public void MajorVersionMismatchAnswersInvalidVersionAndFailsBothSides()
    {
        var h = new Harness(probe: false);
        h.Partition.CapVersion = 0x0201;
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Failed));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Failed));
        var capResp = h.PayloadsSeen().Single(p => p.Type == 0x81);
        Assert.That(capResp.Status, Is.EqualTo(2), "ibmvmc.h: 2 - Invalid Version");
        Assert.That(h.Partition.SeenEntryKinds, Does.Not.Contain(0x8004), "no ADD_BUF after a failed negotiation");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, new byte[32]), Is.EqualTo(-Errno.EIO));
    }

    [Test]
    public void UnusableCapabilitiesAnswerGeneralFailure()
    {
        var h = new Harness(probe: false);
        h.Partition.CapOverride = (0, 32, 4096);      // a guest offering no HMC at all
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Failed));
        var capResp = h.PayloadsSeen().Single(p => p.Type == 0x81);
        Assert.That(capResp.Status, Is.EqualTo(1), "ibmvmc.h: 1 - General Failure");
        Assert.That(h.Partition.SeenEntryKinds, Does.Not.Contain(0x8004));
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), new byte[32]), Is.EqualTo(-Errno.ENOBUFS),
            "the driver ignores the status and goes ready, but no buffer ever comes");
        // A guest that starts over with sane values gets a working channel.
        h.Partition.CapOverride = null;
        h.Partition.ResetAdapter();
        h.Client.Settle();
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
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
    public void FrontEndAnswersSendsWithoutAQueueOrWithABadValidByte()
    {
        var h = new Harness(probe: false);
        Assert.That(h.Device.SendCrq(0x8001_0000_0000_0000UL, 0), Is.EqualTo((long)HcallReturn.Closed), "no queue registered");
        h.Partition.Probe();
        h.Client.Settle();
        Assert.That(h.Device.SendCrq(0x4200_0000_0000_0000UL, 0), Is.EqualTo((long)HcallReturn.Parameter));
        Assert.That(h.Device.SendCrq(0xFF02_0000_0000_0000UL, 0), Is.EqualTo((long)HcallReturn.Parameter), "only the hypervisor side sends transport events");
        Assert.That(h.Device.SendCrq(0xC003_0000_0000_0000UL, 0), Is.EqualTo((long)HcallReturn.Parameter));
        // The engine itself drops whatever gets past a front-end, and stays ready.
        long dropped = h.Engine.Counters.Dropped;
        h.Engine.SubmitEntry([0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        h.Engine.SubmitEntry([0xFF, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.Engine.SubmitEntry(new byte[8]);
        Assert.That(h.Engine.Counters.Dropped, Is.EqualTo(dropped + 3));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
    }

    [Test]
    public void CapabilitiesAreTakenOnlyRightAfterTheInitExchange()
    {
        // Before the fix the engine answered CAP in any registered state (WaitInit, Ready, Failed).
        var caps = new byte[16];
        new CapabilitiesEntry(VmcMessageType.Capabilities, 0, 1, 32, 4096, 4096, 0x0101).Write(caps);

        var h = new Harness();
        var f = h.OpenRouterSession();
        int before = h.PayloadsSeen().Count(p => p.Type == 0x81);
        h.Engine.SubmitEntry(caps);                        // in Ready: dropped, the session survives
        h.Client.Settle();
        Assert.That(h.PayloadsSeen().Count(p => p.Type == 0x81), Is.EqualTo(before), "no second CAP_RESP");
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(h.Client.Call(f, Wire.Router.RouterOpcode.Echo, 1, [1], out _).ReturnCode, Is.EqualTo(0));

        // After REG_CRQ, before any init: dropped, still waiting for the init.
        var fe = new Harness(probe: false);
        var engine = fe.Engine;
        Assert.That(engine.RegisterQueue(4096, reconnect: false), Is.EqualTo(HcallReturn.Success));
        Assert.That(engine.State, Is.EqualTo(AdapterState.WaitInit));
        engine.SubmitEntry(caps);
        Assert.That(engine.State, Is.EqualTo(AdapterState.WaitInit));
        Assert.That(fe.Device.Output.Count, Is.EqualTo(0), "nothing answered");
        // After the engine's own init the guest must answer it first.
        engine.RegisterQueue(4096, reconnect: true);
        Assert.That(engine.State, Is.EqualTo(AdapterState.WaitInitResponse));
        engine.SubmitEntry(caps);
        Assert.That(engine.State, Is.EqualTo(AdapterState.WaitInitResponse));
        engine.SubmitEntry([0xC0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        Assert.That(engine.State, Is.EqualTo(AdapterState.WaitCapabilities));
        engine.SubmitEntry(caps);
        Assert.That(engine.State, Is.EqualTo(AdapterState.Ready));
    }

    [Test]
    public void LimitsOutsideTheProtocolAreRejectedWhenTheFactoryIsMade()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => VmcEngine.Factory(new VmcLimits { MaxHmcs = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => VmcEngine.Factory(new VmcLimits { MaxMtu = 100 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => VmcEngine.Factory(new VmcLimits { PoolSize = 65 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => VmcEngine.Factory(new VmcLimits { OutputBacklog = 1 }));
    }
}
