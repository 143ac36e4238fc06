using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Router;
using VmcBackend.Engine.Sessions;
using VmcBackend.Testing;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

/// <summary>
/// Feeds the engine long seeded sequences of arbitrary and mutated CRQ entries, RDMA requests,
/// queue operations and host-side sends, interleaved with a real (simulated) partition's traffic.
/// Seed: VMC_FUZZ_SEED; count: VMC_FUZZ_ENTRIES (default 100,000).
/// </summary>
public class FuzzTests
{
    /// <summary>Guest memory as the engine sees it: counts every write outside the segments of the
    /// H_COPY_RDMA being served (the engine never writes the guest queue: the front-end does).</summary>
    private sealed class GuardedMemory(ArrayGuestMemory inner) : IGuestMemory
    {
        public GuestSegment[] Rdma = [];
        public long StrayWrites, Writes;

        private bool Allowed(ulong gpa, int length)
        {
            foreach (var s in Rdma) if (gpa >= s.Address && gpa + (ulong)length <= s.Address + s.Length) return true;
            return false;
        }

        private bool Guard(ulong gpa, int length, bool ok)
        {
            if (!ok) return false;
            Writes++;
            if (!Allowed(gpa, length)) StrayWrites++;
            return true;
        }

        public bool TryRead(ulong gpa, Span<byte> d) => inner.TryRead(gpa, d);
        public bool TryReadByteAcquire(ulong gpa, out byte v) => inner.TryReadByteAcquire(gpa, out v);
        public bool TryWrite(ulong gpa, ReadOnlySpan<byte> s) => Guard(gpa, s.Length, inner.TryWrite(gpa, s));
        public bool TryWriteByteRelease(ulong gpa, byte v) => Guard(gpa, 1, inner.TryWriteByteRelease(gpa, v));
    }

    /// <summary>The engine behind the seam, telling the guarded memory which segments an RDMA may write.</summary>
    private sealed class GuardedBackend(IVmcBackend inner, GuardedMemory memory) : IVmcBackend
    {
        public IVmcBackend Inner => inner;
        public VmcBackendConfig Config => inner.Config;
        public ulong Features => inner.Features;
        public bool HasPendingOutput => inner.HasPendingOutput;
        public HcallReturn RegisterQueue(uint entries, bool reconnect) => inner.RegisterQueue(entries, reconnect);
        public HcallReturn FreeQueue() => inner.FreeQueue();
        public void Reset() => inner.Reset();
        public void SubmitEntry(ReadOnlySpan<byte> entry) => inner.SubmitEntry(entry);
        public HcallReturn RequestVmc(out uint drcIndex) => inner.RequestVmc(out drcIndex);
        public void Poll() => inner.Poll();
        public HcallReturn CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
        {
            memory.Rdma = direction == RdmaDirection.RemoteToLocal ? local.ToArray() : [];
            try { return inner.CopyRdma(direction, remoteIoba, length, local); }
            finally { memory.Rdma = []; }
        }
    }

    /// <summary>The router, plus a host-side party that sends unprompted on the same session.</summary>
    private sealed class RouterWithHost : IHmcSessionHandler
    {
        private readonly HmcCommandRouter _router = new();
        public IHmcSessionOutput? Output;
        public void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId) { Output = output; _router.Opened(output, hmcId); }
        public void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message) => _router.Message(output, message);
        public void Closed() { Output = null; _router.Closed(); }
    }

    private static readonly HashSet<int> DefinedKinds =
    [
        0xC001, 0xC002, 0xFF02,
        0x8081, 0x8082, 0x8083, 0x8084, 0x8085, 0x8004, 0x8005, 0x8006,
    ];

    [Test]
    public void RandomEntriesAndRdmaNeverBreakTheEngine()
    {
        int seed = TestEnv.Int("VMC_FUZZ_SEED", 20261122);
        int count = TestEnv.Int("VMC_FUZZ_ENTRIES", 100_000);
        TestContext.Out.WriteLine($"fuzz seed {seed} (VMC_FUZZ_SEED), {count} operations");
        var rng = new Random(seed);

        GuardedMemory? guarded = null;
        var hosts = new[] { new RouterWithHost(), new RouterWithHost() };
        var h = new Harness(new VmcLimits { MaxHmcs = 2, PoolSize = 16 }, pool: 16, hmcs: 2, probe: false,
            engineMemory: m => guarded = new GuardedMemory(m), handlers: i => hosts[i]);
        var factory = VmcEngine.Factory(new VmcLimits { MaxHmcs = 2, PoolSize = 16 }, handlers: i => hosts[i], time: h.Time);
        var backend = (GuardedBackend)h.Device.Connect(fe => new GuardedBackend(factory(fe), guarded!));
        var engine = (VmcEngine)backend.Inner;
        Assert.That(h.Partition.Probe(), Is.EqualTo(0));
        h.Client.Settle();
        var f = h.Client.OpenSession();
        Assert.That(h.Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
        var entry = new byte[16];
        var rx = new byte[16384];
        long entriesSent = 0, rdmaSent = 0, opsLegit = 0, hostSends = 0;

        for (int i = 0; i < count; i++)
        {
            int r = rng.Next(100);
            if (r < 33)
            {
                rng.NextBytes(entry);
                entry[0] = rng.Next(10) switch { < 6 => (byte)CrqValid.Payload, 6 => (byte)CrqValid.Init, 7 => (byte)CrqValid.Transport, _ => entry[0] };
                if (rng.Next(2) == 0) entry[1] = (byte)rng.Next(0, 8);
                if (rng.Next(2) == 0) entry[5] = (byte)rng.Next(0, 3);
                if (rng.Next(2) == 0) entry[4] = (byte)rng.Next(0, 3);
                backend.SubmitEntry(entry);
                entriesSent++;
            }
            else if (r < 53)
            {
                MutatedEntry(rng, entry, engine);
                backend.SubmitEntry(entry);
                entriesSent++;
            }
            else if (r < 72)
            {
                RandomRdma(rng, backend, engine);
                rdmaSent++;
            }
            else if (r < 82)
            {
                // The real partition's own traffic keeps sessions and buffers moving.
                h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, (uint)i, [(byte)i]));
                h.Partition.Read(f, rx.AsSpan(0, Math.Max(1, h.Partition.MaxMtu)));
                opsLegit++;
            }
            else if (r < 85)
            {
                var host = hosts[rng.Next(2)];
                if (host.Output is { } output) { output.TrySend(new byte[rng.Next(0, 5000)]); hostSends++; }
            }
            else if (r < 97)
            {
                if (rng.Next(4) == 0) h.Time.Advance(TimeSpan.FromMilliseconds(rng.Next(0, 120)));
                h.Client.Settle();
            }
            else
            {
                switch (rng.Next(5))
                {
                    case 0:
                        backend.RegisterQueue((uint)rng.Next(0, 5000), rng.Next(2) == 0);
                        h.Partition.ResetAdapter();
                        break;
                    case 1: h.Partition.ResetAdapter(); break;
                    case 2: engine.RequestRemoveBuffer(rng.Next(0, 3)); break;
                    case 3: h.Partition.RequestVmc(out _); break;
                    default:
                        h.Partition.Close(f);
                        h.Client.Settle();
                        f = h.Partition.Open();
                        h.Partition.SetHmcId(f, new byte[32]);
                        break;
                }
            }
            string? problem = engine.CheckConsistency();
            if (problem != null) Assert.Fail($"step {i}: {problem}");
            if (h.Partition.Violations.Count > 0) Assert.Fail($"step {i}: driver trap: {h.Partition.Violations[0]}");
        }

        h.Client.Settle();
        TestContext.Out.WriteLine($"entries {entriesSent}, rdma {rdmaSent}, legit ops {opsLegit}, host sends {hostSends}, engine writes {guarded!.Writes}, " +
            $"refused guest accesses {h.Rig.Memory.RefusedAccesses}, dropped {engine.Counters.Dropped}, reclaimed {engine.Counters.BuffersReclaimed}, " +
            $"front-end max outstanding {h.Device.Queue.MaxOutstanding}/{h.Device.Queue.PacingLimit}");
        Assert.That(entriesSent + rdmaSent, Is.GreaterThanOrEqualTo(count / 2));
        Assert.That(guarded.StrayWrites, Is.EqualTo(0), "engine wrote guest memory outside the RDMA targets");
        Assert.That(h.Partition.SeenEntryKinds.Except(DefinedKinds), Is.Empty, "engine wrote an undefined entry");
        Assert.That(engine.Counters.Dropped, Is.GreaterThan(0), "the fuzzer reached the drop paths");
        Assert.That(h.Device.Failures, Is.Empty, "the channel never failed");
        Assert.That(h.Device.Queue.MaxOutstanding, Is.LessThanOrEqualTo(h.Device.Queue.PacingLimit));
    }

    private static void MutatedEntry(Random rng, byte[] e, VmcEngine engine)
    {
        var type = (VmcMessageType)new byte[] { 0x01, 0x02, 0x03, 0x06, 0x84, 0x85, 0x81, 0x04 }[rng.Next(8)];
        var s0 = engine.Session(0);
        byte session = s0.IsOpen && rng.Next(3) > 0 ? s0.Session : (byte)rng.Next(0, 4);
        byte index = (byte)(rng.Next(10) == 0 ? rng.Next(256) : rng.Next(0, 2));
        ushort id = (ushort)(rng.Next(10) == 0 ? rng.Next(65536) : rng.Next(0, 20));
        uint word = rng.Next(4) switch { 0 => (uint)rng.Next(0, 64), 1 => (uint)rng.Next(4000, 17000), 2 => uint.MaxValue, _ => (uint)rng.Next() };
        if (type == VmcMessageType.Capabilities)
            new CapabilitiesEntry(type, 0, (byte)rng.Next(0, 4), (ushort)rng.Next(0, 80), (uint)rng.Next(0, 20000), (ushort)rng.Next(), (ushort)(rng.Next(3) == 0 ? rng.Next() : 0x0101)).Write(e);
        else
            CrqEntry.Message(type, (VmcStatus)rng.Next(0, 7), session, index, id, word).Write(e);
        if (rng.Next(8) == 0) e[rng.Next(16)] ^= (byte)(1 << rng.Next(8));
    }

    private static void RandomRdma(Random rng, IVmcBackend backend, VmcEngine engine)
    {
        var dir = (RdmaDirection)(rng.Next(10) == 0 ? (uint)rng.Next() : (uint)rng.Next(2));
        ulong remote = rng.Next(3) switch
        {
            0 => engine.BufferIoba(rng.Next(0, 2), rng.Next(0, 16)) + (ulong)rng.Next(0, 64),
            1 => (ulong)rng.NextInt64(0, (long)engine.Config.RemoteWindowSize + 100000),
            _ => (ulong)rng.NextInt64() * 2,
        };
        int nseg = rng.Next(0, 5);
        var segs = new GuestSegment[nseg];
        ulong total = 0;
        for (int k = 0; k < nseg; k++)
        {
            ulong len = (ulong)rng.Next(0, 5000);
            ulong addr = rng.Next(4) switch { 0 => (ulong)rng.NextInt64(), 1 => (8UL << 20) - len / 2, _ => (ulong)rng.Next(0, 8 << 20) };
            segs[k] = new GuestSegment(addr, len);
            total += len;
        }
        ulong length = rng.Next(5) == 0 ? (ulong)rng.Next(0, 20000) : total;
        backend.CopyRdma(dir, remote, length, segs);
    }
}
