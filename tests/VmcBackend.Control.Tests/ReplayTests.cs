using VmcBackend.Control.Replay;
using VmcBackend.Control.Trace;
using VmcBackend.Engine;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Control.Tests;

/// <summary>Record an engine in this process (simulated partition, in-process front-end), replay the recording.</summary>
public class ReplayTests
{
    private sealed class Recorded
    {
        public readonly InProcessRig Rig;
        public readonly SimulatedPartition Partition;
        public readonly PartitionClient Client;
        public readonly RecordRing Ring;
        public readonly TraceRecorder Recorder = new(1);

        public Recorded(int ringBytes = 8 << 20)
        {
            var time = new ManualTime();
            Rig = new InProcessRig(time: time);
            Ring = new RecordRing(ringBytes);
            var l = Rig.Engine!.Limits;
            // From the engine's creation, before the guest registers its queue: a replayable trace.
            Recorder.Add(Ring, new VmInfo("vm1", 1, l.MaxMtu, l.PoolSize, l.MaxHmcs, l.DrcIndex, l.OutputBacklog, time.TimestampFrequency), joined: false);
            Rig.Engine.Observer = Recorder;
            Partition = new SimulatedPartition(Rig.Device);
            Client = new PartitionClient(Partition, () => Rig.Device.Run());
            Assert.That(Partition.Probe(), Is.EqualTo(0));
            Client.Settle();
        }

        public void Session(int echoes)
        {
            var f = Client.OpenSession("replay-test");
            Assert.That(Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
            var rng = new Random(3);
            for (int i = 0; i < echoes; i++)
            {
                var data = new byte[new[] { 1, 100, 4064 }[i % 3]];
                rng.NextBytes(data);
                Assert.That(Client.Call(f, RouterOpcode.Echo, (uint)i, data, out _).ReturnCode, Is.EqualTo(0));
            }
            Assert.That(Client.Call(f, (RouterOpcode)0x7777, 99, default, out _).ReturnCode, Is.EqualTo((ushort)RouterReturnCode.InvalidOpcode));
            Partition.Close(f);
            Client.Settle();
        }

        public (TraceHeader, List<TraceRecord>) End()
        {
            Rig.Engine!.Reset();
            Recorder.EndAll();
            return TraceImage.Read(TraceImage.From(Ring));
        }
    }

    [Test]
    public void ARecordedSessionReplaysIdentically()
    {
        var rec = new Recorded();
        rec.Session(30);
        var (header, records) = rec.End();
        Assert.That(records.Count(r => r.Type == RecordType.Message), Is.EqualTo(2 * 32), "each request and response seen");
        Assert.That(records.Count(r => r.Type == RecordType.Memory), Is.GreaterThan(60), "the RDMA data is recorded");
        var result = Replayer.Replay(header, records);
        Assert.That(result, Has.Count.EqualTo(1));
        Assert.That(result[0].Divergence, Is.Null);
        Assert.That(result[0].Inputs, Is.GreaterThan(100));
    }

    [Test]
    public void ATamperedOutputIsADivergenceWithBothSides()
    {
        var rec = new Recorded();
        rec.Session(5);
        var (header, records) = rec.End();
        // The hypervisor's OPEN_RESP says another buffer id in the "recording".
        int at = records.FindIndex(r => r.Type == RecordType.Post && r.Entry[1] == 0x82);
        var bad = records[at];
        var payload = (byte[])bad.Payload.Clone();
        payload[7] ^= 0x01;
        records[at] = new TraceRecord(bad.Type, bad.Flags, bad.Vm, bad.TimeNs, payload, bad.Offset, bad.Index);
        var result = Replayer.Replay(header, records);
        Assert.That(result[0].Divergence, Does.Contain($"diverges at record {bad.Index}")
            .And.Contain("recorded  ").And.Contain("replayed  ").And.Contain("OPEN_RESP"));
        TestContext.Out.WriteLine(result[0].Divergence);
    }

    [Test]
    public void ATamperedInputChangesTheOutputs()
    {
        var rec = new Recorded();
        rec.Session(5);
        var (header, records) = rec.End();
        // The guest's echo data read through H_COPY_RDMA differs: the router's echo differs from the recording.
        int at = records.FindLastIndex(r => r.Type == RecordType.Memory && !r.Memory.Write && r.Memory.Length == 4096);
        var m = records[at];
        var payload = (byte[])m.Payload.Clone();
        payload[16 + 40] ^= 0xFF;
        records[at] = new TraceRecord(m.Type, m.Flags, m.Vm, m.TimeNs, payload, m.Offset, m.Index);
        var result = Replayer.Replay(header, records);
        Assert.That(result[0].Divergence, Is.Not.Null);
        TestContext.Out.WriteLine(result[0].Divergence);
    }

    [Test]
    public void ATraceWithLostRecordsIsNotReplayable()
    {
        var rec = new Recorded(ringBytes: 4096);
        rec.Session(20);
        Assert.That(rec.Ring.LostTotal, Is.GreaterThan(0), "a 4 KiB ring that nobody reads fills up");
        // The reader catches up late: what it gets next starts with LOST and the count.
        var early = TraceImage.Read(TraceImage.From(rec.Ring)).Records;
        var (header, late) = rec.End();
        Assert.That(late[0].Type, Is.EqualTo(RecordType.Lost));
        // Every loss is reported: big records lost while small ones still fitted were reported on the way.
        Assert.That(early.Concat(late).Where(r => r.Type == RecordType.Lost).Sum(r => r.LostCount), Is.EqualTo(rec.Ring.LostTotal));
        var e = Assert.Throws<NotReplayableException>(() => Replayer.Replay(header, [.. early, .. late]));
        Assert.That(e!.Message, Does.Contain("lost"));
    }

    [Test]
    public void AVmThatWasAlreadyRunningIsNotReplayable()
    {
        var rig = new InProcessRig();
        var partition = new SimulatedPartition(rig.Device);
        Assert.That(partition.Probe(), Is.EqualTo(0));
        var ring = new RecordRing(1 << 20);
        var recorder = new TraceRecorder(1);
        var l = rig.Engine!.Limits;
        recorder.Add(ring, new VmInfo("vm1", 1, l.MaxMtu, l.PoolSize, l.MaxHmcs, l.DrcIndex, l.OutputBacklog, 1000), joined: true);
        rig.Engine.Observer = recorder;
        rig.Engine.Poll();
        var (header, records) = TraceImage.Read(TraceImage.From(ring));
        var e = Assert.Throws<NotReplayableException>(() => Replayer.Replay(header, records));
        Assert.That(e!.Message, Does.Contain("already running"));
    }

    [Test]
    public void WithoutAReaderTheEngineHasNoObserver()
    {
        var rig = new InProcessRig();
        Assert.That(rig.Engine!.Observer, Is.Null, "nobody traces by default: the engine pays a null check");
    }
}
