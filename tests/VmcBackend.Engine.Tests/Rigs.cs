using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Sessions;
using VmcBackend.Testing;
using VmcBackend.Testing.FrontEnd;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

/// <summary>An in-process rig (front-end model + engine behind the seam) plus a simulated
/// partition and a client, ready to use. Assertions read what the front-end and the guest see.</summary>
internal sealed class Harness
{
    public Harness(VmcLimits? limits = null, int mtu = 4096, int pool = 32, int hmcs = 1, bool probe = true,
        Func<ArrayGuestMemory, IGuestMemory>? engineMemory = null, Func<int, IHmcSessionHandler>? handlers = null,
        DriverVersion version = DriverVersion.Linux61, int pageSize = 65536, FaultPlan? faults = null)
    {
        Limits = limits ?? new VmcLimits();
        Faults = faults;
        Rig = new InProcessRig(Limits, backendMemory: engineMemory, handlers: handlers, time: Time, faults: faults);
        Partition = new SimulatedPartition(Rig.Device, mtu, pool, hmcs, version, pageSize) { KeepLog = true };
        Client = new PartitionClient(Partition, () => Rig.Device.Run());
        if (probe)
        {
            Assert.That(Partition.Probe(), Is.EqualTo(0));
            Client.Settle();
        }
    }

    public ManualTime Time { get; } = new();
    public FaultPlan? Faults { get; }
    public VmcLimits Limits { get; }
    public InProcessRig Rig { get; }
    public SpaprVmcModel Device => Rig.Device;
    public VmcEngine Engine => Rig.Engine ?? throw new InvalidOperationException("no back-end connected");
    public SimulatedPartition Partition { get; }
    public PartitionClient Client { get; }

    public SimulatedPartition.VmcFile OpenRouterSession(string id = "hmc-a")
    {
        var f = Client.OpenSession(id);
        var h = Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _);
        Assert.That(h.ReturnCode, Is.EqualTo(0));
        return f;
    }

    /// <summary>vmcd dies and a fresh one connects: the front-end writes a transport event, the new
    /// engine gets REG_CRQ with RECONNECT and sends init. Returns the new engine.</summary>
    public VmcEngine RestartHypervisor(VmcLimits? limits = null, Func<int, IHmcSessionHandler>? handlers = null)
        => Rig.Restart(VmcEngine.Factory(limits ?? Limits, handlers: handlers, time: Time, faults: Faults));

    /// <summary>Lets the engine's timed retries come due, then settles.</summary>
    public void Wait(TimeSpan t)
    {
        Time.Advance(t);
        Client.Settle();
    }

    /// <summary>The guest's log of entries from the hypervisor, as (type, status, owner) of each payload entry.</summary>
    public List<(byte Type, byte Status, byte Owner, byte Index, ushort BufferId)> PayloadsSeen()
        => Partition.Log.Where(e => e.Valid == 0x80).Select(e => (e.Type, e.Status, e.Owner, e.Index, e.BufferId)).ToList();

    public void AssertHealthy()
    {
        Assert.That(Partition.Violations, Is.Empty, "driver traps triggered");
        Assert.That(Device.Failures, Is.Empty, "channel failed");
        Assert.That(Engine.CheckConsistency(), Is.Null);
        Assert.That(Device.Queue.MaxOutstanding, Is.LessThanOrEqualTo(Device.Queue.PacingLimit + 1), "front-end paced at entries/2 (+ a transport event)");
    }
}

/// <summary>A host-side party on an HMC session (what the control plane will attach): records what
/// the partition sends, and sends whenever the test tells it to.</summary>
internal sealed class HostEndpoint : IHmcSessionHandler
{
    public IHmcSessionOutput? Output { get; private set; }
    public List<byte[]> Received { get; } = [];
    public int Opens, Closes;
    public void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId) { Output = output; Opens++; }
    public void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message) => Received.Add(message.ToArray());
    public void Closed() { Output = null; Closes++; }
}

/// <summary>Driver bugs a test reproduces are reported as expected failures, never as a pass.</summary>
internal static class DriverBug
{
    public static void ExpectedFailure(string trap, string quote)
    {
        TestContext.Out.WriteLine($"XFAIL: {trap}: {quote}");
        Assert.Warn($"XFAIL (driver bug, reproduced as expected): {trap}: {quote}");
    }
}
