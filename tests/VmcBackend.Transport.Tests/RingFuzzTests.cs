using System.Buffers.Binary;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Testing;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// A front-end that breaks the ring protocol gets CHANNEL_FAILED reason 3 and a closed connection;
/// hostile *values* in a well-formed request get an rc and the connection stays up.
/// </summary>
public class RingFuzzTests
{
    public sealed record Violation(string Name, string Text, Action<FrontEndChannel> Break)
    {
        public override string ToString() => Name;
    }

    private static void Slot(FrontEndChannel ch, uint kind, uint a0 = 0, uint a1 = 0, ulong length = 0)
    {
        ch.Write32(Ch.Slot + Ch.Kind, kind);
        ch.Write32(Ch.Slot + Ch.A0, a0);
        ch.Write32(Ch.Slot + Ch.A1, a1);
        BinaryPrimitives.WriteUInt64LittleEndian(ch.Memory.Span[(Ch.Slot + Ch.Length)..], length);
        ch.Issue(ch.NextSeq, deadlineMs: 200);
    }

    public static IEnumerable<Violation> Violations() =>
    [
        new("sq_prod a ring and one ahead", "sq_prod", ch => { ch.Write32(Ch.SqProd, Ch.SqEntries + 1); ch.Kick.Signal(); }),
        new("sq_prod behind sq_cons", "sq_prod", ch => { ch.Write32(Ch.SqProd, uint.MaxValue); ch.Kick.Signal(); }),
        new("oq_cons ahead of oq_prod", "oq_cons", ch => { ch.Write32(Ch.OqCons, 5); ch.TrySubmit(new byte[16]); }),
        new("unknown slot kind", "kind 9", ch => Slot(ch, 9)),
        new("slot kind 0", "kind 0", ch => Slot(ch, 0)),
        new("RDMA direction 2", "direction 2", ch => Slot(ch, Ch.KindCopyRdma, 2)),
        new("RDMA 255 segments", "255 segments", ch => Slot(ch, Ch.KindCopyRdma, 0, 255)),
        new("RDMA lengths do not add up", "add up", ch => Slot(ch, Ch.KindCopyRdma, 0, 0, 10)),
        new("REG_CRQ unknown flags", "flags 0x2", ch => Slot(ch, Ch.KindRegCrq, 16, 2)),
    ];

    [TestCaseSource(nameof(Violations))]
    public void ProtocolViolationFailsTheChannel(Violation v)
    {
        using var fx = new ServerFixture();
        using var healthy = new LinkedFrontEnd(fx);
        using var fe = new LinkedFrontEnd(fx);
        fe.Channel.Request(Ch.KindRegCrq, 64);
        v.Break(fe.Channel);
        var f = fe.Link.Socket.ReadFrame(5000);
        Assert.That(f?.Request, Is.EqualTo(Vu.ChannelFailed), "CHANNEL_FAILED");
        Assert.That(fe.Link.Socket.Failure?.Reason, Is.EqualTo(3u), "reason 3: protocol violation");
        Assert.That(fe.Link.Socket.Failure?.Text, Does.Contain(v.Text));
        Assert.That(f?.Flags, Is.EqualTo(Vu.FlagsRequest), "unsolicited: version bits only, not a reply");
        Assert.That(fe.Link.Socket.WaitForClose(5000, out _), "then the connection closes");
        Assert.That(fx.WaitForError(v.Text));
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1));
        var e = new byte[16];
        e[0] = 0x80; e[15] = 1;
        Assert.That(healthy.Echo(e), Is.EqualTo(e));
    }

    /// <summary>
    /// Seeded (VMC_RING_FUZZ_SEED, VMC_RING_FUZZ_CALLS): random entries and random well-formed slot
    /// requests with hostile values. Every slot request completes within its deadline with an rc,
    /// every SQ entry is consumed, and the connection stays up.
    /// </summary>
    [TestCase("stub")]
    [TestCase("engine")]
    public void HostileValuesAlwaysGetAnRcAndKeepTheConnection(string backend)
    {
        int seed = TestEnv.Int("VMC_RING_FUZZ_SEED", 31337);
        int calls = TestEnv.Int("VMC_RING_FUZZ_CALLS", 20_000);
        TestContext.Out.WriteLine($"ring fuzz seed {seed} (VMC_RING_FUZZ_SEED), {calls} calls");
        var rng = new Random(seed);
        using var fx = backend == "stub" ? new ServerFixture() : SessionTests.Engine();
        using var fe = new LinkedFrontEnd(fx);
        var ch = fe.Channel;
        var entry = new byte[16];
        var segs = new (ulong, ulong)[254];
        var rcs = new Dictionary<long, int>();
        long entries = 0;
        var sink = new byte[16];
        for (int i = 0; i < calls; i++)
        {
            switch (rng.Next(10))
            {
                case < 5:
                    rng.NextBytes(entry);
                    // Half of them plausible: a valid byte the device lets through, a real VMC type.
                    if (rng.Next(2) == 0) { entry[0] = rng.Next(3) == 0 ? (byte)0xC0 : (byte)0x80; entry[1] = (byte)rng.Next(0, 0x12); }
                    if (ch.TrySubmit(entry)) entries++;
                    break;
                case < 8:
                {
                    int n = rng.Next(0, rng.Next(2) == 0 ? 4 : 255);
                    ulong total = 0;
                    for (int k = 0; k < n; k++)
                    {
                        ulong addr = rng.Next(4) switch
                        {
                            0 => (ulong)rng.NextInt64(),
                            1 => LinkedFrontEnd.RamSize - (ulong)rng.Next(0, 64),
                            2 => ulong.MaxValue - (ulong)rng.Next(0, 64),
                            _ => (ulong)rng.Next(0, (int)LinkedFrontEnd.RamSize),
                        };
                        ulong len = (ulong)rng.Next(0, 600);
                        segs[k] = (addr, len);
                        total += len;
                    }
                    ulong remote = rng.Next(2) == 0 ? (ulong)rng.Next(0, 1 << 17) : (ulong)rng.NextInt64();
                    var r = ch.Request(Ch.KindCopyRdma, (uint)rng.Next(2), (uint)n, total, remote, segs.AsSpan(0, n));
                    Assert.That(r, Is.Not.Null, $"call {i}: COPY_RDMA completed within its deadline");
                    rcs[r!.Value.Rc] = rcs.GetValueOrDefault(r.Value.Rc) + 1;
                    break;
                }
                case 8:
                {
                    var r = ch.Request(Ch.KindRegCrq, (uint)rng.Next(), (uint)rng.Next(2));
                    Assert.That(r, Is.Not.Null, $"call {i}: REG_CRQ completed");
                    break;
                }
                default:
                    Assert.That(ch.Request(rng.Next(2) == 0 ? Ch.KindFreeCrq : Ch.KindRequestVmc), Is.Not.Null, $"call {i}");
                    break;
            }
            if (rng.Next(50) == 0) while (ch.TryTakeOutput(sink)) { }
        }
        Assert.That(ServerFixture.WaitFor(() => ch.SqPending == 0), "every SQ entry was consumed");
        TestContext.Out.WriteLine($"{entries} entries; COPY_RDMA rcs: " + string.Join(", ", rcs.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} x{kv.Value}")));
        Assert.That(fe.Link.Socket.CallU64(Vu.GetFeatures, default), Is.Not.Null, "the connection is still up");
        Assert.That(fe.Link.Socket.Failure, Is.Null);
        Assert.That(fx.Collector.Errors, Is.Empty);
        Assert.That(rcs.Keys, Is.SubsetOf(new long[] { 0, -11, -13, -14, -15 }), "H_SUCCESS, H_PERMISSION, H_SOURCE_PARM, H_DEST_PARM, H_REMOTE_PARM");
    }
}
