using VmcBackend.Engine;
using VmcBackend.Engine.Crq;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Tests;

/// <summary>An in-process rig plus a simulated partition and a client, ready to use.</summary>
internal sealed class Harness
{
    public Harness(VmcLimits? limits = null, int mtu = 4096, int pool = 32, int hmcs = 1, bool probe = true,
        Func<ArrayGuestMemory, IGuestMemory>? engineMemory = null)
    {
        Rig = new InProcessRig(limits, engineMemory: engineMemory);
        Engine = Rig.Engine;
        Partition = new SimulatedPartition(Rig.Platform, mtu, pool, hmcs);
        Client = new PartitionClient(Partition, () => Engine.Pump());
        if (probe)
        {
            Assert.That(Partition.Probe(), Is.EqualTo(0));
            Client.Settle();
        }
    }

    public InProcessRig Rig { get; }
    public VmcEngine Engine { get; private set; }
    public SimulatedPartition Partition { get; }
    public PartitionClient Client { get; }

    public SimulatedPartition.VmcFile OpenRouterSession(string id = "hmc-a")
    {
        var f = Client.OpenSession(id);
        var h = Client.Call(f, Wire.Router.RouterOpcode.ExchangeOps, 1, default, out _);
        Assert.That(h.ReturnCode, Is.EqualTo(0));
        return f;
    }

    /// <summary>The guest queue as guest-physical segments (what QEMU sends in REG_CRQ).</summary>
    public GuestSegment[] QueueSegments()
    {
        var segs = new GuestSegment[64];
        Assert.That(Rig.Platform.Tce.TryTranslate(Partition.QueueIoba, (ulong)Partition.QueueEntries * 16, true, segs, out int n));
        return segs[..n];
    }

    /// <summary>
    /// vmcd dies and comes back: the front-end writes a transport event at the published tail, a
    /// fresh engine takes over with REG_CRQ(RECONNECT, tail+1). Returns the new engine.
    /// </summary>
    public VmcEngine RestartHypervisor(VmcLimits? limits = null)
    {
        var segs = QueueSegments();
        var qemu = new CrqWriter(Rig.Memory, new RecordingNotifier(), 16);
        Assert.That(qemu.Register(segs, (uint)Partition.QueueEntries, Engine.QueueTail));
        Span<byte> e = stackalloc byte[16];
        CrqEntry.TransportEvent(CrqTransportType.PartnerClosed).Write(e);
        Assert.That(qemu.Post(e));
        var engine = new VmcEngine(limits ?? Engine.Limits, Rig.Memory, Rig.Notifier);
        Rig.Platform.Backend = new EngineBackend(engine);
        Engine = engine;
        Assert.That(engine.RegisterQueue(segs, (uint)Partition.QueueEntries, qemu.Tail, reconnect: true), Is.EqualTo(0));
        return engine;
    }

    public void AssertHealthy()
    {
        Assert.That(Partition.Violations, Is.Empty, "driver traps triggered");
        Assert.That(Engine.CheckConsistency(), Is.Null);
    }
}
