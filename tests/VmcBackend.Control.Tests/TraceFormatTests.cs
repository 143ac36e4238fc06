using System.Buffers.Binary;
using VmcBackend.Control.Trace;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;

namespace VmcBackend.Control.Tests;

public class TraceFormatTests
{
    private static readonly byte[] Entry = Convert.FromHexString("80060000010000030000000000000420");

    /// <summary>One record of every type, through a ring, as a trace file image.</summary>
    private static byte[] EveryRecord()
    {
        var ring = new RecordRing(1 << 16);
        var e = new RecordEncoder(7) { Clock = () => 1234 };
        void W(ReadOnlySpan<byte> r) => Assert.That(ring.TryWrite(r), Is.True);
        W(e.VmStart(new VmInfo("vm7", 4242, 8192, 16, 2, 0x81000009, 64, 1_000_000_000), VmStartFlags.Joined));
        W(e.Entry(RecordType.Submit, Entry));
        W(e.RegCrq(4096, reconnect: true));
        W(e.Empty(RecordType.FreeCrq));
        W(e.CopyRdma(RdmaDirection.RemoteToLocal, 300, 0x2000, [new GuestSegment(0x10000, 100), new GuestSegment(0x20000, 200)]));
        W(e.Empty(RecordType.RequestVmc));
        W(e.Empty(RecordType.Reset));
        W(e.Empty(RecordType.Poll));
        W(e.Result(-15, 0x81000009));
        W(e.Entry(RecordType.Post, Entry));
        W(e.Memory(0x10000, write: true, ok: true, [1, 2, 3]));
        W(e.Memory(0x30000, write: false, ok: false, new byte[50]));
        W(e.Message(1, MessageDirection.ToPartition, new byte[100]));
        W(e.Failed(ChannelFailure.OutputBacklogOverflow, "the guest stopped ✓"));
        W(e.Time(987654321));
        W(e.Attach(1, 555));
        W(e.Detach(1, "the program closed its channel"));
        W(e.HostSend(1, [9, 8, 7]));
        W(e.Lost(12));
        W(e.Empty(RecordType.VmEnd));
        return TraceImage.From(ring);
    }

    [Test]
    public void EveryRecordTypeRoundTrips()
    {
        var (header, r) = TraceImage.Read(EveryRecord());
        Assert.That(header.Version, Is.EqualTo(1));
        Assert.That(r, Has.Count.EqualTo(20));
        Assert.That(r.All(x => x.Vm == 7 && x.TimeNs == 1234), "VM number and time in every header");
        var vm = r[0].VmStart;
        Assert.That((vm.Name, vm.Pid, vm.MaxMtu, vm.PoolSize, vm.MaxHmcs, vm.DrcIndex, vm.OutputBacklog, vm.TimestampFrequency),
            Is.EqualTo(("vm7", 4242u, 8192, 16, 2, 0x81000009u, 64, 1_000_000_000L)));
        Assert.That(r[0].Flags, Is.EqualTo((byte)VmStartFlags.Joined));
        Assert.That(r[1].Entry.ToArray(), Is.EqualTo(Entry));
        Assert.That(r[2].RegCrq, Is.EqualTo((4096u, true)));
        var (dir, len, remote, segs) = r[4].CopyRdma;
        Assert.That((dir, len, remote), Is.EqualTo((RdmaDirection.RemoteToLocal, 300UL, 0x2000UL)));
        Assert.That(segs, Is.EqualTo(new[] { new GuestSegment(0x10000, 100), new GuestSegment(0x20000, 200) }));
        Assert.That(r[8].Result, Is.EqualTo((-15L, 0x81000009UL)));
        var m = r[10].Memory;
        Assert.That((m.Address, m.Length, m.Write, m.Ok, m.Data.ToArray()), Is.EqualTo((0x10000UL, 3, true, true, new byte[] { 1, 2, 3 })));
        var failed = r[11].Memory;
        Assert.That((failed.Length, failed.Ok, failed.Data.Length), Is.EqualTo((50, false, 0)), "a failed access keeps its length, no data");
        var msg = r[12].Message;
        Assert.That((msg.HmcIndex, msg.Direction, msg.Length, msg.Head.Length), Is.EqualTo((1, MessageDirection.ToPartition, 100, 32)));
        Assert.That(r[13].Failure, Is.EqualTo((ChannelFailure.OutputBacklogOverflow, "the guest stopped ✓")));
        Assert.That(r[14].Timestamp, Is.EqualTo(987654321));
        Assert.That(r[15].Attach, Is.EqualTo((1, 555u)));
        Assert.That(r[16].Detach, Is.EqualTo((1, "the program closed its channel")));
        Assert.That(r[17].HostSend.Message.ToArray(), Is.EqualTo(new byte[] { 9, 8, 7 }));
        Assert.That(r[18].LostCount, Is.EqualTo(12));
        Assert.That(r[19].Type, Is.EqualTo(RecordType.VmEnd));
        // Each record decodes to a line.
        var text = new TraceText(0);
        Assert.That(r.Select(text.Format), Has.None.Contains("unknown record type"));
    }

    [Test]
    public void ATruncatedTraceIsOneClearLine()
    {
        var image = EveryRecord();
        var (_, records) = TraceImage.Read(image);
        var cuts = new List<(long At, string Where)> { (5, "header"), (20, "header") };
        foreach (var rec in records.Take(5))
        {
            cuts.Add((rec.Offset + 3, "record header"));
            if (rec.Payload.Length > 0) cuts.Add((rec.Offset + 16 + rec.Payload.Length / 2, "payload"));
        }
        foreach (var (at, where) in cuts)
        {
            var cut = image.AsSpan(0, (int)at).ToArray();
            var e = Assert.Throws<TraceFormatException>(() => TraceImage.Read(cut), $"cut at {at} ({where})");
            Assert.That(e!.Message, Does.Contain("truncated").And.Not.Contain("\n"), $"cut at {at} ({where})");
        }
        // A trace cut exactly at a record boundary is a shorter trace, not a broken one.
        var whole = image.AsSpan(0, (int)records[5].Offset).ToArray();
        Assert.That(TraceImage.Read(whole).Records, Has.Count.EqualTo(5));
    }

    [Test]
    public void AnotherVersionIsRefusedByName()
    {
        var image = EveryRecord();
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(8), 2);
        var e = Assert.Throws<TraceFormatException>(() => TraceImage.Read(image));
        Assert.That(e!.Message, Does.Contain("version 2").And.Contain("version 1"));
    }

    [Test]
    public void SomethingElseIsNotATrace()
    {
        var e = Assert.Throws<TraceFormatException>(() => TraceImage.Read("#!/bin/sh\necho hello\n"u8.ToArray()));
        Assert.That(e!.Message, Does.Contain("not a vmcd trace"));
        Assert.That(Assert.Throws<TraceFormatException>(() => TraceImage.Read([]))!.Message, Does.Contain("not a vmcd trace"));
    }

    [Test]
    public void AnImpossibleLengthIsCorruptNotAnAllocation()
    {
        var image = EveryRecord();
        var (_, records) = TraceImage.Read(image);
        BinaryPrimitives.WriteInt32LittleEndian(image.AsSpan((int)records[3].Offset + 4), int.MaxValue);
        var e = Assert.Throws<TraceFormatException>(() => TraceImage.Read(image));
        Assert.That(e!.Message, Does.Contain("corrupt").And.Contain("record 3"));
    }

    [Test]
    public void AFullRingLosesRecordsAndSaysHowMany()
    {
        var ring = new RecordRing(1024);
        var recorder = new TraceRecorder(1);
        recorder.Add(ring, new VmInfo("vm1", 1, 4096, 32, 1, 1, 1024, 1000), joined: false);
        for (int i = 0; i < 200; i++) recorder.EntryReceived(Entry);      // 32 bytes each: most do not fit
        Assert.That(ring.LostTotal, Is.GreaterThan(100));
        long lostBefore = ring.LostTotal;
        // The reader catches up: the next record that fits is preceded by LOST with the count.
        var (_, first) = TraceImage.Read(TraceImage.From(ring));
        recorder.EntryPosted(Entry);
        var (_, next) = TraceImage.Read(TraceImage.From(ring));
        Assert.That(first.Count(r => r.Type == RecordType.Submit), Is.EqualTo(200 - lostBefore));
        Assert.That(next.Select(r => r.Type), Is.EqualTo(new[] { RecordType.Lost, RecordType.Post }));
        Assert.That(next[0].LostCount, Is.EqualTo(lostBefore));
    }
}
