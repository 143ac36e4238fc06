using System.Buffers.Binary;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.Transport.Tests;

/// <summary>The v2 datapath against the stub back-end: set-up, SQ -> OQ, the request slot, reset, features.</summary>
public class ChannelTests
{
    private static byte[] Entry(byte valid, byte type, uint tag)
    {
        var e = new byte[16];
        e[0] = valid; e[1] = type;
        BinaryPrimitives.WriteUInt32BigEndian(e.AsSpan(12), tag);
        return e;
    }

    [Test]
    public void SetUpReportsTheBackEndsConfigAndFeatures()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Link.Config, Is.EqualTo(new BackendConfig(StubBackend.Drc, 4096, 32, 2, 254, StubBackend.WindowSize)));
        Assert.That(fe.Link.OfferedFeatures, Is.EqualTo(Vu.FeatureMemTableUpdates));
        Assert.That(fx.Server.ConnectionCount, Is.EqualTo(1));
    }

    [Test]
    public void SubmittedEntriesComeBackInOrderThroughTheOutputRing()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Channel.Request(Ch.KindRegCrq, 64), Is.EqualTo(((long, ulong)?)(0L, 0UL)));
        for (uint i = 0; i < 3000; i++)
        {
            var e = Entry(0x80, 0x02, i);
            Assert.That(fe.Echo(e), Is.EqualTo(e), $"entry {i}");
        }
        fe.Channel.Call.Drain();
        Assert.That(fe.Channel.TrySubmit(Entry(0x80, 0x02, 3000)));
        Assert.That(fe.Channel.Call.WaitReadable(5000), "the back-end wrote the call eventfd");
        Assert.That(fe.Channel.TryTakeOutput(new byte[16]), "after publishing the entry");
        Assert.That(fe.Channel.Read32(Ch.SqCons), Is.EqualTo(3001u), "sq_cons published");
    }

    [Test]
    public void FullOutputRingBacklogsAndDrainsInOrder()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        fe.Channel.Request(Ch.KindRegCrq, 64);
        // 1,500 entries while nobody consumes the OQ (1,024 slots): 476 wait in the back-end.
        uint sent = 0;
        while (sent < 1500)
            if (fe.Channel.TrySubmit(Entry(0x80, 0x02, sent))) sent++;
            else Thread.Yield();
        Assert.That(ServerFixture.WaitFor(() => fe.Channel.OqPending == Ch.OqEntries), "the OQ filled");
        var got = new byte[16];
        for (uint i = 0; i < 1500; i++)
        {
            Assert.That(ServerFixture.WaitFor(() => fe.Channel.TryTakeOutput(got)), $"entry {i} arrived (10 ms retry)");
            Assert.That(BinaryPrimitives.ReadUInt32BigEndian(got.AsSpan(12)), Is.EqualTo(i));
        }
        Assert.That(fx.Collector.Errors, Is.Empty);
    }

    [Test]
    public void SlotRequestsGetTheirRcAndValue()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        var ch = fe.Channel;
        Assert.That(ch.Request(Ch.KindRequestVmc), Is.EqualTo(((long, ulong)?)(0L, StubBackend.Drc)));
        // REG_CRQ with RECONNECT: done_value is the OQ position before the back-end's init entry.
        Assert.That(ch.Request(Ch.KindRegCrq, 256, Ch.RegReconnect), Is.EqualTo(((long, ulong)?)(0L, 0UL)));
        var init = new byte[16];
        Assert.That(ServerFixture.WaitFor(() => ch.TryTakeOutput(init)));
        Assert.That(init[0..2], Is.EqualTo(new byte[] { 0xC0, 0x01 }));
        fe.Echo(Entry(0x80, 1, 1));
        Assert.That(ch.Request(Ch.KindFreeCrq), Is.EqualTo(((long, ulong)?)(0L, 2UL)), "done_value: OQ position after the freed queue's entries");
        Assert.That(ch.Request(Ch.KindRegCrq, 64), Is.EqualTo(((long, ulong)?)(0L, 2UL)));
        // RDMA: 5000 bytes guest -> window, then back to another guest range, in 2 segments each.
        new Random(3).NextBytes(fe.Ram.Span.Slice(0x1000, 5000));
        Assert.That(ch.Request(Ch.KindCopyRdma, 0, 2, 5000, 100, [(0x1000, 3000), (0x1000 + 3000, 2000)])?.Rc, Is.EqualTo(0));
        Assert.That(ch.Request(Ch.KindCopyRdma, 1, 2, 5000, 100, [(0x8000, 1000), (0x8000 + 1000, 4000)])?.Rc, Is.EqualTo(0));
        Assert.That(fe.Ram.Span.Slice(0x8000, 5000).SequenceEqual(fe.Ram.Span.Slice(0x1000, 5000)), "bytes went through the window");
        // Guest values outside guest memory are an hcall rc, not a protocol error.
        Assert.That(ch.Request(Ch.KindCopyRdma, 0, 1, 100, 0, [(ulong.MaxValue - 50, 100)])?.Rc, Is.EqualTo(-13), "H_SOURCE_PARM");
        Assert.That(ch.Request(Ch.KindCopyRdma, 1, 1, 100, 0, [(LinkedFrontEnd.RamSize - 10, 100)])?.Rc, Is.EqualTo(-14), "H_DEST_PARM");
        Assert.That(ch.Request(Ch.KindCopyRdma, 0, 0, 0, 0)?.Rc, Is.EqualTo(0), "zero-length copy");
        Assert.That(fe.Link.Socket.CallU64(Vu.GetFeatures, default), Is.EqualTo(Vu.FeatureMemTableUpdates), "socket still answers");
        Assert.That(fx.Collector.Errors, Is.Empty);
    }

    [Test]
    public void ResetIsAnsweredAndTheChannelKeepsWorking()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        fe.Channel.Request(Ch.KindRegCrq, 64);
        fe.Echo(Entry(0x80, 1, 7));
        Assert.That(fe.Link.Socket.CallU64(Vu.Reset, default), Is.EqualTo(0UL));
        Assert.That(fe.Channel.Request(Ch.KindRegCrq, 64)?.Rc, Is.EqualTo(0));
        fe.Echo(Entry(0x80, 1, 8));
    }

    [Test]
    public void MemTableUpdatesReplaceGuestMemoryBetweenRingItems()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx, Vu.FeatureMemTableUpdates);
        using var more = new Memfd("hotplug", 1 << 20);
        new Random(5).NextBytes(more.Span[..4096]);
        var ch = fe.Channel;
        // Before the update the second region is unknown: H_SOURCE_PARM.
        Assert.That(ch.Request(Ch.KindCopyRdma, 0, 1, 4096, 0, [(0x4000_0000, 4096)])?.Rc, Is.EqualTo(-13));
        Assert.That(fe.Link.Socket.CallU64(Vu.SetMemTable, Vu.MemTable((0, LinkedFrontEnd.RamSize, 0), (0x4000_0000, 1 << 20, 0)),
            [fe.Ram.File.Number, more.File.Number]), Is.EqualTo(0UL));
        Assert.That(ch.Request(Ch.KindCopyRdma, 0, 1, 4096, 0, [(0x4000_0000, 4096)])?.Rc, Is.EqualTo(0));
        Assert.That(ch.Request(Ch.KindCopyRdma, 1, 1, 4096, 0, [(0x2000, 4096)])?.Rc, Is.EqualTo(0));
        Assert.That(fe.Ram.Span.Slice(0x2000, 4096).SequenceEqual(more.Span[..4096]));
    }

    [Test]
    public void MemTableAfterChannelWithoutTheFeatureIsRefused()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Link.Socket.CallU64(Vu.SetMemTable, Vu.MemTable((0, LinkedFrontEnd.RamSize, 0)), [fe.Ram.File.Number]), Is.EqualTo((ulong)Vu.EINVAL));
        Assert.That(fe.Link.Socket.WaitForClose(5000, out _));
        Assert.That(fx.WaitForError("MEM_TABLE_UPDATES"));
    }

    [Test]
    public void BackendFailureBecomesChannelFailedAndAClose()
    {
        using var fx = new ServerFixture();
        using var fe = new LinkedFrontEnd(fx);
        fe.Channel.Request(Ch.KindRegCrq, 64);
        // Nobody consumes the OQ: 1,024 entries fill it, the stub's 2,048-entry backlog overflows.
        uint sent = 0;
        while (fe.Link.Socket.Failure == null && sent < 10_000 && !fe.Link.Socket.Socket.Poll(0, System.Net.Sockets.SelectMode.SelectRead))
            if (fe.Channel.TrySubmit(Entry(0x80, 2, sent))) sent++; else Thread.Yield();
        Assert.That(fe.Link.Socket.ReadFrame(5000)?.Request, Is.EqualTo(Vu.ChannelFailed));
        Assert.That(fe.Link.Socket.Failure?.Reason, Is.EqualTo(1u), "reason 1: output backlog overflow");
        Assert.That(fe.Link.Socket.WaitForClose(5000, out _));
        Assert.That(fx.WaitForError("backlog overflow"));
    }

    private sealed class ThrowingBackend(Engine.Backend.IVmcFrontEnd fe) : Engine.Backend.IVmcBackend
    {
        private readonly StubBackend _inner = new(fe);
        public Engine.Backend.VmcBackendConfig Config => _inner.Config;
        public ulong Features => 0;
        public Wire.Hcall.HcallReturn RegisterQueue(uint entries, bool reconnect) => _inner.RegisterQueue(entries, reconnect);
        public Wire.Hcall.HcallReturn FreeQueue() => _inner.FreeQueue();
        public void Reset() => _inner.Reset();
        public void SubmitEntry(ReadOnlySpan<byte> entry) => throw new InvalidOperationException("engine bug");
        public Wire.Hcall.HcallReturn CopyRdma(Engine.Backend.RdmaDirection d, ulong r, ulong l, ReadOnlySpan<Engine.Memory.GuestSegment> s) => _inner.CopyRdma(d, r, l, s);
        public Wire.Hcall.HcallReturn RequestVmc(out uint drc) => _inner.RequestVmc(out drc);
        public bool HasPendingOutput => false;
        public void Poll() { }
    }

    [Test]
    public void AnExceptionInTheBackendIsContainedToItsConnection()
    {
        using var fx = new ServerFixture(fe => new ThrowingBackend(fe));
        using var other = new LinkedFrontEnd(fx);
        other.Channel.Request(Ch.KindRegCrq, 64);
        using var fe = new LinkedFrontEnd(fx);
        fe.Channel.Request(Ch.KindRegCrq, 64);
        fe.Channel.TrySubmit(Entry(0x80, 2, 1));
        Assert.That(fe.Link.Socket.ReadFrame(5000)?.Request, Is.EqualTo(Vu.ChannelFailed));
        Assert.That(fe.Link.Socket.Failure?.Reason, Is.EqualTo(2u), "reason 2: internal error");
        Assert.That(fe.Link.Socket.WaitForClose(5000, out _));
        Assert.That(fx.WaitForError("engine bug"));
        Assert.That(other.Channel.Request(Ch.KindRequestVmc)?.Rc, Is.EqualTo(0), "the other connection is unaffected");
    }

    [Test]
    public void AFactoryThatThrowsRefusesOnlyThatConnection()
    {
        int n = 0;
        using var fx = new ServerFixture(fe => Interlocked.Increment(ref n) == 1 ? throw new InvalidOperationException("no engine for you") : new StubBackend(fe));
        using (var s = fx.RawConnect())
        {
            Assert.That(s.ReadFrame(5000)?.Request, Is.EqualTo(Vu.ChannelFailed));
            Assert.That(s.Failure?.Text, Does.Contain("no engine for you"));
        }
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Channel.Request(Ch.KindRequestVmc)?.Rc, Is.EqualTo(0));
    }
}
