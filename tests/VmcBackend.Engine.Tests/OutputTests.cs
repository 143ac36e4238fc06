using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Testing.FrontEnd;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Tests;

/// <summary>The front-end's guest-queue writer (tests/VmcBackend.Testing) and the engine's output path.</summary>
public class OutputTests
{
    private static byte[] Entry(byte n) { var e = new byte[16]; e[0] = 0x80; e[1] = n; e[8] = n; e[15] = n; return e; }

    private sealed class ListSource(IEnumerable<byte[]> entries) : IOutputSource
    {
        private readonly Queue<byte[]> _q = new(entries);
        public int Count => _q.Count;
        public bool TryPeek(Span<byte> entry) { if (_q.Count == 0) return false; _q.Peek().CopyTo(entry); return true; }
        public void Consume() => _q.Dequeue();
    }

    [Test]
    public void WriterFillsConsumedSlotsInOrderAndPacesAtHalfTheQueue()
    {
        var mem = new ArrayGuestMemory(4096);
        var w = new GuestQueueWriter(mem) { InterruptsEnabled = true };
        // 8 entries in two segments, the second below the first in guest memory.
        Assert.That(w.Register([new GuestSegment(0x800, 64), new GuestSegment(0x100, 64)], 8));
        var src = new ListSource(Enumerable.Range(1, 10).Select(i => Entry((byte)i)));
        Assert.That(w.Pump(src), Is.EqualTo(4), "at most entries/2 unconsumed");
        Assert.That(src.Count, Is.EqualTo(6));
        Assert.That(mem.Ram[0x800 + 1], Is.EqualTo(1));
        Assert.That(mem.Ram[0x800 + 48 + 15], Is.EqualTo(4));
        Assert.That(w.Pump(src), Is.EqualTo(0), "nothing consumed, nothing more written");
        mem.Ram[0x800] = 0; mem.Ram[0x810] = 0;          // the guest consumes two
        Assert.That(w.Pump(src), Is.EqualTo(2));
        Assert.That(mem.Ram[0x100 + 1], Is.EqualTo(5), "the second segment continues the queue");
        Assert.That(mem.Ram[0x100 + 16 + 8], Is.EqualTo(6));
        // the guest consumes slots 2..5: 0x820, 0x830, 0x100, 0x110
        mem.Ram[0x820] = mem.Ram[0x830] = mem.Ram[0x100] = mem.Ram[0x110] = 0;
        Assert.That(w.Pump(src), Is.EqualTo(4));
        Assert.That(mem.Ram[0x120 + 1], Is.EqualTo(7));
        Assert.That(mem.Ram[0x800 + 1], Is.EqualTo(9), "wrapped to slot 0, which the guest had consumed");
        Assert.That(w.MaxOutstanding, Is.EqualTo(4u));
        Assert.That(w.Interrupts, Is.EqualTo(3), "one pulse per batch that wrote something");
    }

    [Test]
    public void WriterNeverOverwritesAnUnconsumedSlot()
    {
        var mem = new ArrayGuestMemory(4096);
        var w = new GuestQueueWriter(mem);
        Assert.That(w.Register([new GuestSegment(0, 256)], 16, tail: 3));
        mem.Ram[3 * 16] = 0xC0;    // left there by the back-end that wrote before (never consumed)
        Assert.That(w.TryWrite(Entry(1)), Is.False);
        Assert.That(mem.Ram[3 * 16 + 1], Is.EqualTo(0));
        mem.Ram[3 * 16] = 0;
        Assert.That(w.TryWrite(Entry(1)), Is.True);
        Assert.That(mem.Ram[3 * 16 + 1], Is.EqualTo(1));
        Assert.That(w.Tail, Is.EqualTo(4u));
    }

    [Test]
    public void TransportEventWaitsForAFreeSlotIgnoresPacingAndGoesFirst()
    {
        var mem = new ArrayGuestMemory(4096);
        var w = new GuestQueueWriter(mem) { InterruptsEnabled = true };
        Assert.That(w.Register([new GuestSegment(0, 64)], 4));
        var src = new ListSource([Entry(1), Entry(2), Entry(3), Entry(4)]);
        Assert.That(w.Pump(src), Is.EqualTo(2), "paced at 2 of 4");
        mem.Ram[0] = 0;                                    // one consumed: slot 2 and 3 empty, pacing allows one
        w.QueueTransportEvent();
        Assert.That(w.TransportEventPending, Is.False, "written at once into the free tail slot");
        Assert.That(mem.Ram[32], Is.EqualTo(0xFF));
        Assert.That(mem.Ram[33], Is.EqualTo(0x02));
        Assert.That(w.Pump(src), Is.EqualTo(0), "3 outstanding: pacing holds the rest");
        // Now a full queue: the event waits for a free slot, and goes before every other entry.
        var mem2 = new ArrayGuestMemory(4096);
        for (int i = 0; i < 4; i++) mem2.Ram[i * 16] = 0x80;
        var w2 = new GuestQueueWriter(mem2) { InterruptsEnabled = true };
        Assert.That(w2.Register([new GuestSegment(0, 64)], 4, tail: 1));
        w2.QueueTransportEvent();
        Assert.That(w2.TransportEventPending, Is.True, "slot 1 not consumed yet");
        var src2 = new ListSource([Entry(7)]);
        Assert.That(w2.Pump(src2), Is.EqualTo(0));
        mem2.Ram[16] = 0; mem2.Ram[32] = 0;
        Assert.That(w2.Pump(src2), Is.EqualTo(2));
        Assert.That(mem2.Ram[16], Is.EqualTo(0xFF), "transport event first");
        Assert.That(mem2.Ram[33], Is.EqualTo(7), "then the entry");
    }

    [Test]
    public void InterruptOnlyWhenTheGuestEnabledIt()
    {
        var mem = new ArrayGuestMemory(4096);
        int pulses = 0;
        var w = new GuestQueueWriter(mem) { Interrupt = () => pulses++ };
        Assert.That(w.Register([new GuestSegment(0, 256)], 16));
        Assert.That(w.TryWrite(Entry(1)));
        Assert.That((pulses, w.LostPulses), Is.EqualTo((0, 1L)), "disabled: the pulse is lost");
        w.InterruptsEnabled = true;
        Assert.That(w.TryWrite(Entry(2)));
        Assert.That(pulses, Is.EqualTo(1));
    }

    [Test]
    public void WriterRefusesInvalidLayoutsAndNeverWritesOutsideGuestMemory()
    {
        var mem = new ArrayGuestMemory(4096);
        var w = new GuestQueueWriter(mem);
        Assert.That(w.Register([new GuestSegment(0, 64)], 5), Is.False, "sizes disagree");
        Assert.That(w.Register([new GuestSegment(0, 24)], 1), Is.False, "not a multiple of 16");
        Assert.That(w.Register([new GuestSegment(0, 64)], 4, 4), Is.False, "tail out of range");
        Assert.That(w.Register([], 4), Is.False);
        Assert.That(w.Register([new GuestSegment(ulong.MaxValue - 15, 16), new GuestSegment(0, 48)], 4), Is.False, "wraps");
        Assert.That(w.Register([new GuestSegment(0, 64)], 0), Is.False);
        Assert.That(w.Register([new GuestSegment(8192, 64)], 4), "a layout outside memory is still a layout");
        Assert.That(w.TryWrite(Entry(1)), Is.False);
        Assert.That(mem.RefusedAccesses, Is.GreaterThan(0));
        Assert.That(mem.Ram.All(b => b == 0));
    }

    /// <summary>A front-end whose output ring holds <paramref name="capacity"/> entries and is drained only when the test says.</summary>
    private sealed class SmallRingFrontEnd(int capacity) : IVmcFrontEnd
    {
        public readonly Queue<byte[]> Ring = new();
        public int Notifies;
        public List<(ChannelFailure, string)> Failures = [];
        public IGuestMemory Memory { get; } = new ArrayGuestMemory(4096);
        public bool TryPostEntry(ReadOnlySpan<byte> entry) { if (Ring.Count == capacity) return false; Ring.Enqueue(entry.ToArray()); return true; }
        public void Notify() => Notifies++;
        public void Fail(ChannelFailure reason, string text) => Failures.Add((reason, text));
    }

    private static readonly byte[] GuestInit = [0xC0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    [Test]
    public void FullOutputRingBacklogsInOrderAndPollDrains()
    {
        var fe = new SmallRingFrontEnd(4);
        var engine = (VmcEngine)VmcEngine.Factory(new VmcLimits { OutputBacklog = 16 })(fe);
        Assert.That(engine.RegisterQueue(4096, reconnect: true), Is.EqualTo(HcallReturn.Success));   // posts an init
        for (int i = 0; i < 10; i++) engine.SubmitEntry(GuestInit);                                   // each answered 0xC0 02
        Assert.That(fe.Ring, Has.Count.EqualTo(4));
        Assert.That(engine.BacklogCount, Is.EqualTo(7));
        Assert.That(engine.HasPendingOutput, Is.True);
        int notifies = fe.Notifies;
        var seen = fe.Ring.ToList();
        fe.Ring.Clear();
        engine.Poll();
        Assert.That(fe.Notifies, Is.EqualTo(notifies + 1), "one wake-up per batch");
        seen.AddRange(fe.Ring); fe.Ring.Clear();
        engine.Poll();
        seen.AddRange(fe.Ring);
        Assert.That(engine.HasPendingOutput, Is.False);
        Assert.That(seen.Select(e => (e[0], e[1])), Is.EqualTo(new[] { ((byte)0xC0, (byte)1) }.Concat(Enumerable.Repeat(((byte)0xC0, (byte)2), 10))));
        Assert.That(fe.Failures, Is.Empty);
    }

    [Test]
    public void BacklogOverflowFailsTheChannelOnceAndStopsTheEngine()
    {
        var fe = new SmallRingFrontEnd(4);
        var engine = (VmcEngine)VmcEngine.Factory(new VmcLimits { OutputBacklog = 16 })(fe);
        engine.RegisterQueue(4096, reconnect: false);
        for (int i = 0; i < 100; i++) engine.SubmitEntry(GuestInit);
        Assert.That(fe.Failures.Select(f => f.Item1), Is.EqualTo(new[] { ChannelFailure.OutputBacklogOverflow }));
        Assert.That(fe.Failures[0].Item2, Does.Contain("stopped consuming"));
        Assert.That(engine.RegisterQueue(4096, false), Is.EqualTo(HcallReturn.Hardware));
        Assert.That(engine.HasPendingOutput, Is.False);
    }

    [Test]
    public void GuestThatStopsConsumingGetsATransportEventAndRecoversAfterReconnect()
    {
        // The guest floods init entries but never runs its tasklet: the front-end's queue fills
        // (paced at half), then the output ring, then the engine's backlog, and the engine fails
        // the channel. The front-end treats that as a lost back-end: transport event, reconnect.
        var h = new Harness();
        for (int i = 0; i < 5000 && h.Device.Failures.Count == 0; i++)
        {
            h.Device.SendCrq(0xC001_0000_0000_0000UL, 0);
            h.Device.Run();
        }
        Assert.That(h.Device.Failures.Select(f => f.Reason), Is.EqualTo(new[] { ChannelFailure.OutputBacklogOverflow }));
        Assert.That(h.Device.Backend, Is.Null, "the front-end dropped the failed back-end");
        Assert.That(h.Device.SendCrq(0x8001_0000_0000_0000UL, 0), Is.EqualTo((long)HcallReturn.Closed));
        h.Device.Connect(h.Rig.Factory);
        h.Client.Settle();
        Assert.That(h.Partition.TransportEvents, Is.EqualTo(1), "the transport event reached the guest");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Engine.State, Is.EqualTo(Handshake.AdapterState.Ready));
        var f = h.OpenRouterSession("after-flood");
        Assert.That(h.Client.Call(f, Wire.Router.RouterOpcode.Echo, 3, [3], out _).ReturnCode, Is.EqualTo(0));
        Assert.That(h.Partition.Violations, Is.Empty);
    }
}
