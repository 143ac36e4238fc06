using VmcBackend.Engine.Crq;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Tests;

public class CrqWriterTests
{
    private static byte[] Entry(byte n) { var e = new byte[16]; e[0] = 0x80; e[1] = n; e[15] = n; return e; }

    [Test]
    public void FullQueueBacklogsInOrderAndDrains()
    {
        var mem = new ArrayGuestMemory(4096);
        var n = new RecordingNotifier();
        var w = new CrqWriter(mem, n, 4);
        // Two segments, 2 + 2 entries, the second below the first in guest memory.
        Assert.That(w.Register([new GuestSegment(0x800, 32), new GuestSegment(0x100, 32)], 4, 0));
        for (byte i = 1; i <= 6; i++) Assert.That(w.Post(Entry(i)), Is.True);
        Assert.That(w.BacklogCount, Is.EqualTo(2));
        Assert.That(n.Tail, Is.EqualTo(0u), "wrapped after four entries");
        Assert.That(mem.Ram[0x800 + 1], Is.EqualTo(1));
        Assert.That(mem.Ram[0x100 + 16 + 1], Is.EqualTo(4));
        // The guest consumes slot 0 only: one backlogged entry moves in.
        mem.Ram[0x800] = 0;
        Assert.That(w.Drain(), Is.True);
        Assert.That(w.BacklogCount, Is.EqualTo(1));
        Assert.That(mem.Ram[0x800 + 1], Is.EqualTo(5));
        Assert.That(mem.Ram[0x800 + 15], Is.EqualTo(5));
        // Backlog bound: 4.
        for (byte i = 7; i <= 9; i++) Assert.That(w.Post(Entry(i)), Is.True);
        Assert.That(w.Post(Entry(10)), Is.False, "bounded backlog refuses, never overwrites");
        Assert.That(w.TakeWritten(), Is.EqualTo(5));
    }

    [Test]
    public void InvalidLayoutsAreRefused()
    {
        var w = new CrqWriter(new ArrayGuestMemory(4096), new RecordingNotifier(), 4);
        Assert.That(w.Register([new GuestSegment(0, 64)], 5, 0), Is.False, "sizes disagree");
        Assert.That(w.Register([new GuestSegment(0, 24)], 1, 0), Is.False, "not a multiple of 16... and wrong size");
        Assert.That(w.Register([new GuestSegment(0, 64)], 4, 4), Is.False, "tail out of range");
        Assert.That(w.Register([], 4, 0), Is.False);
        Assert.That(w.Register([new GuestSegment(ulong.MaxValue - 15, 16), new GuestSegment(0, 48)], 4, 0), Is.False, "wraps");
        Assert.That(w.Register([new GuestSegment(0, 64)], 0, 0), Is.False);
    }

    [Test]
    public void QueueOutsideGuestMemoryFaultsInsteadOfWriting()
    {
        var mem = new ArrayGuestMemory(4096);
        var w = new CrqWriter(mem, new RecordingNotifier(), 4);
        Assert.That(w.Register([new GuestSegment(8192, 64)], 4, 0));
        Assert.That(w.Post(Entry(1)), Is.False);
        Assert.That(mem.RefusedAccesses, Is.GreaterThan(0));
        Assert.That(mem.Ram.All(b => b == 0));
    }

    [Test]
    public void EngineBacklogsWhenThePartitionIsSlowAndPumpDrains()
    {
        var h = new Harness();
        var f = h.OpenRouterSession();
        // The partition does not run while the hypervisor asks for 4,200 buffers back: more entries than
        // the 4,096-slot queue holds. The excess waits in the backlog, in order.
        const int requests = 4200;
        for (int i = 0; i < requests; i++) Assert.That(h.Engine.RequestRemoveBuffer(0), Is.True);
        Assert.That(h.Engine.BacklogCount, Is.GreaterThan(100));
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
        while (h.Engine.BacklogCount > 0)
        {
            h.Partition.Settle();
            h.Engine.Pump();
        }
        h.Partition.Settle();
        Assert.That(h.Engine.Counters.BuffersRemoved, Is.EqualTo(32), "every free buffer given back once, the rest answered NO_BUFFER");
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(0));
        Assert.That(h.Engine.Counters.QueueFaults, Is.EqualTo(0));
        h.AssertHealthy();
        GC.KeepAlive(f);
    }
}
