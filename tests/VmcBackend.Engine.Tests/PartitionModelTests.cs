using VmcBackend.Testing;
using VmcBackend.Testing.FrontEnd;

namespace VmcBackend.Engine.Tests;

/// <summary>The simulated partition is itself checked against facts read off the driver, so
/// that it and the engine cannot be wrong in the same way.</summary>
public class PartitionModelTests
{
    /// <summary>A platform that records the partition's hypercalls and answers them itself.</summary>
    private sealed class ScriptedPlatform : IPartitionPlatform
    {
        private readonly SpaprVmcModel _inner = new(new ArrayGuestMemory(4 << 20), 4 << 20);
        public readonly List<(ulong W1, ulong W2)> Sent = [];
        public readonly Queue<long> RequestVmcAnswers = new();
        public int RequestVmcCalls, VioSignals;
        public bool Enabled;
        public Action? Interrupt;
        public uint LocalLiobn => _inner.LocalLiobn;
        public uint RemoteLiobn => _inner.RemoteLiobn;
        public long RegCrq(ulong queueIoba, ulong queueBytes) => 0;
        public long FreeCrq() => 0;
        public long SendCrq(ulong word1, ulong word2) { Sent.Add((word1, word2)); return 0; }
        public long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba) => 0;
        public long RequestVmc(out ulong drcIndex) { RequestVmcCalls++; drcIndex = 0x81000007; return RequestVmcAnswers.Count > 0 ? RequestVmcAnswers.Dequeue() : 0; }
        public long VioSignal(bool enable) { VioSignals++; Enabled = enable; return 0; }
        public void ConnectInterrupt(Action handler) => Interrupt = handler;
        public ulong AllocDma(int bytes) => _inner.AllocDma(bytes);
        public void ReadDma(ulong ioba, Span<byte> destination) => _inner.ReadDma(ioba, destination);
        public void WriteDma(ulong ioba, ReadOnlySpan<byte> source) => _inner.WriteDma(ioba, source);
        public byte ReadDmaByteAcquire(ulong ioba) => _inner.ReadDmaByteAcquire(ioba);
        public void WriteDmaByte(ulong ioba, byte value) => _inner.WriteDmaByte(ioba, value);
        public void Put(SimulatedPartition p, int slot, ulong w1, ulong w2)
        {
            Span<byte> e = stackalloc byte[16];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(e, w1);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(e[8..], w2);
            WriteDma(p.QueueIoba + (ulong)slot * 16 + 1, e[1..]);
            WriteDmaByte(p.QueueIoba + (ulong)slot * 16, e[0]);
        }
    }

    [Test]
    public void ProbeSendsInitAndTheDefaultCapabilitiesAreTheDriversWords()
    {
        var p = new ScriptedPlatform();
        var sim = new SimulatedPartition(p);
        Assert.That(sim.Probe(), Is.EqualTo(0));
        Assert.That(p.Enabled, Is.True, "probe enables the VIO interrupt");
        Assert.That(p.Sent, Is.EqualTo(new[] { (0xC001_0000_0000_0000UL, 0UL) }));
        p.Put(sim, 0, 0xC002_0000_0000_0000UL, 0);         // the hypervisor's init response
        p.Interrupt!();
        Assert.That(p.Enabled, Is.False, "the handler disables the interrupt");
        Assert.That(sim.RunPending(), Is.True);
        // Measured from the driver (ibmvmc-driver-facts.md): w1=0x8001000000010020 w2=0x0000100010000101.
        Assert.That(p.Sent[^1], Is.EqualTo((0x8001_0000_0001_0020UL, 0x0000_1000_1000_0101UL)));
        Assert.That(sim.State, Is.EqualTo(DriverState.Capabilities));
        Assert.That(p.Enabled, Is.True, "the tasklet re-enables when the queue is empty");
    }

    [Test]
    public void StateIsAU32SoSchedResetComparesAboveReady()
    {
        Assert.That((uint)DriverState.SchedReset, Is.EqualTo(0xFFFF_FFFFu));
        var h = new Harness();
        h.OpenRouterSession();
        h.Partition.ResetAdapter();       // frees the opened HMC's buffers; the reset task has not run yet
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.SchedReset));
        var q = h.Partition.Query();
        Assert.That(q.HaveVmc, Is.True, "have_vmc = state > initial, true for 0xFFFFFFFF");
        Assert.That(q.State, Is.EqualTo(-1));
        // setup_hmc: "state < ready" is false for sched_reset, so no EAGAIN: it goes on to the buffer count.
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), new byte[32]), Is.EqualTo(-Errno.ENOBUFS));
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
    }

    [Test]
    public void RequestVmcRetriesBusyAndLongBusyAndPassesUnlistedCodesThrough()
    {
        var p = new ScriptedPlatform();
        var sim = new SimulatedPartition(p);
        foreach (long rc in new long[] { 1, 9900, 9905, 1 }) p.RequestVmcAnswers.Enqueue(rc);
        Assert.That(sim.RequestVmc(out uint drc), Is.EqualTo(0));
        Assert.That(p.RequestVmcCalls, Is.EqualTo(5), "H_BUSY and long-busy retried, as h_request_vmc does");
        Assert.That(drc, Is.EqualTo(0x81000007u));
        p.RequestVmcAnswers.Enqueue(-2);
        Assert.That(sim.RequestVmc(out _), Is.EqualTo(-Errno.EPERM), "H_FUNCTION");
        p.RequestVmcAnswers.Enqueue(-16);
        Assert.That(sim.RequestVmc(out _), Is.EqualTo(-Errno.ENODEV), "H_RESOURCE");
        p.RequestVmcAnswers.Enqueue(2);
        Assert.That(sim.RequestVmc(out _), Is.EqualTo(2), "an unlisted rc (H_CLOSED) reaches user space (trap 13)");
    }

    [Test]
    public void APulseWhileDisabledIsLostButTheTaskletLooksAgainAfterEnabling()
    {
        var p = new ScriptedPlatform();
        var sim = new SimulatedPartition(p);
        sim.Probe();
        p.Put(sim, 0, 0xC002_0000_0000_0000UL, 0);
        p.Interrupt!();
        // While the tasklet has not run (interrupt disabled), a second entry arrives: its pulse is lost.
        p.Put(sim, 1, 0x8081_0000_0001_0020UL, 0x0000_1000_1000_0101UL);   // CAP_RESP
        Assert.That(p.Enabled, Is.False);
        Assert.That(sim.RunPending(), Is.True);
        Assert.That(sim.State, Is.EqualTo(DriverState.Ready), "one tasklet run took both entries");
        Assert.That(sim.RunPending(), Is.False, "nothing scheduled: no pulse came");
        // An entry written with the interrupt enabled but no pulse delivered stays unseen.
        p.Put(sim, 2, 0x8004_0000_0000_0000UL, 0x1000);
        Assert.That(sim.RunPending(), Is.False);
        Assert.That(sim.ValidBufferCount(0), Is.EqualTo(0));
        p.Interrupt!();
        sim.RunPending();
        Assert.That(sim.ValidBufferCount(0), Is.EqualTo(1));
    }
}
