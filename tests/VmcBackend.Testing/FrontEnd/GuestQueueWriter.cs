using System.Threading;
using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing.FrontEnd;

/// <summary>
/// The front-end's writer of the guest's CRQ (docs/protocol.md, section 2 "Output ring" and
/// section 5), written independently of the engine: the one place test front-ends (in-process and
/// tests/ReferenceFrontEnd) put entries into the guest queue, and the one helper for the transport
/// event the front-end writes when it loses its back-end.
/// <list type="bullet">
/// <item>a slot is written only when its valid byte is 0 (the guest consumed it): bytes 8..15
/// first, then bytes 1..7, then the valid byte with release semantics, so the guest never sees a
/// valid byte before the rest (what spapr_vio.c does with its two 8-byte stores and a barrier);</item>
/// <item>pacing: at most entries/2 of its entries unconsumed in the guest queue (the driver
/// advertises its queue size as crq_size so that its partner keeps at most half outstanding); the
/// guest's head is found by walking forward from the oldest entry written while the valid byte is 0;</item>
/// <item>a transport event is never dropped: it waits for the next free slot, ignores pacing, and
/// goes before any later entry;</item>
/// <item>after writing, the VIO interrupt is raised only if the guest enabled it (H_VIO_SIGNAL):
/// a pulse while disabled is lost, as on the real machine.</item>
/// </list>
/// </summary>
public sealed class GuestQueueWriter(IGuestMemory memory)
{
    private const int EntrySize = 16;
    private const byte TransportValid = 0xFF;
    private GuestSegment[] _segments = [];
    private uint _oldest;          // slot of the oldest entry possibly not yet consumed
    private uint _outstanding;     // entries written and possibly not yet consumed
    private byte _pendingEvent;    // transport event type waiting for a free slot (0: none)

    public bool IsRegistered => Entries != 0;
    public uint Entries { get; private set; }
    /// <summary>The next slot this writer fills.</summary>
    public uint Tail { get; private set; }
    public bool InterruptsEnabled { get; set; }
    public bool TransportEventPending => _pendingEvent != 0;
    public long Written { get; private set; }
    public long Interrupts { get; private set; }
    public long LostPulses { get; private set; }
    /// <summary>Entries that could not be written because the queue slot is not in guest memory.</summary>
    public long Faults { get; private set; }
    /// <summary>The most entries this writer ever had unconsumed in the queue.</summary>
    public uint MaxOutstanding { get; private set; }
    /// <summary>Raised for each interrupt pulse delivered to the guest.</summary>
    public Action? Interrupt { get; set; }

    /// <summary>Most of this writer's entries that may be unconsumed at once.</summary>
    public uint PacingLimit => Entries / 2;

    /// <summary>Adopts a guest queue laid out as <paramref name="segments"/> (guest-physical), whose
    /// next free slot is <paramref name="tail"/>. False (nothing adopted) when the layout is invalid.</summary>
    public bool Register(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail = 0)
    {
        if (entries == 0 || tail >= entries || segments.Length == 0) return false;
        ulong total = 0;
        foreach (var s in segments)
        {
            if (s.Length == 0 || s.Length % EntrySize != 0 || s.Address + s.Length < s.Address) return false;
            total += s.Length;
            if (total > (ulong)entries * EntrySize) return false;
        }
        if (total != (ulong)entries * EntrySize) return false;
        _segments = segments.ToArray();
        Entries = entries;
        Tail = _oldest = tail;
        _outstanding = 0;
        _pendingEvent = 0;
        return true;
    }

    /// <summary>H_FREE_CRQ: the queue is gone, and with it any transport event still waiting for it.</summary>
    public void Free()
    {
        Entries = Tail = _oldest = _outstanding = 0;
        _pendingEvent = 0;
        _segments = [];
    }

    /// <summary>The back-end was lost: a transport event (0xFF, <paramref name="type"/>) goes into
    /// the next free slot as soon as there is one, before anything else.</summary>
    public void QueueTransportEvent(byte type = 0x02)
    {
        if (!IsRegistered) return;
        _pendingEvent = type;
        Raise(WritePendingEvent() ? 1 : 0);
    }

    /// <summary>Moves entries from <paramref name="source"/> into the guest queue while slots are
    /// free and pacing allows, then raises one interrupt if anything was written. Returns how many.</summary>
    public int Pump(IOutputSource source)
    {
        if (!IsRegistered) return 0;
        int written = 0;
        if (_pendingEvent != 0)
        {
            if (!WritePendingEvent()) { Raise(0); return 0; }
            written++;
        }
        Span<byte> e = stackalloc byte[EntrySize];
        while (source.TryPeek(e))
        {
            Refresh();
            if (_outstanding >= PacingLimit) break;
            var r = TryWriteSlot(e);
            if (r == Slot.Full) break;
            source.Consume();
            if (r == Slot.Written) written++;
            else Faults++;      // the queue is not in guest memory: the entry is lost, as a failed DMA write loses it
        }
        Raise(written);
        return written;
    }

    /// <summary>Writes one entry now if a slot is free and pacing allows (a transport event is
    /// always placed first). Used by front-ends that hand over entries one at a time.</summary>
    public bool TryWrite(ReadOnlySpan<byte> entry)
    {
        if (!IsRegistered || (_pendingEvent != 0 && !WritePendingEvent())) return false;
        Refresh();
        if (_outstanding >= PacingLimit) return false;
        bool ok = TryWriteSlot(entry) == Slot.Written;
        Raise(ok ? 1 : 0);
        return ok;
    }

    /// <summary>Entries of this writer the guest has not consumed yet.</summary>
    public uint Outstanding { get { Refresh(); return _outstanding; } }

    private bool WritePendingEvent()
    {
        Span<byte> e = stackalloc byte[EntrySize];
        e[0] = TransportValid;
        e[1] = _pendingEvent;
        if (TryWriteSlot(e) != Slot.Written) return false;
        _pendingEvent = 0;
        return true;
    }

    private void Raise(int written)
    {
        if (written == 0) return;
        if (!InterruptsEnabled) { LostPulses++; return; }
        Interrupts++;
        Interrupt?.Invoke();
    }

    private void Refresh()
    {
        while (_outstanding > 0 && TryLocateSlot(_segments, _oldest, out ulong gpa)
               && memory.TryReadByteAcquire(gpa, out byte valid) && valid == 0)
        {
            _oldest = _oldest + 1 == Entries ? 0 : _oldest + 1;
            _outstanding--;
        }
    }

    private enum Slot { Written, Full, Fault }

    private Slot TryWriteSlot(ReadOnlySpan<byte> entry)
    {
        if (!TryLocateSlot(_segments, Tail, out ulong gpa) || !memory.TryReadByteAcquire(gpa, out byte valid)) return Slot.Fault;
        if (valid != 0) return Slot.Full;
        if (!memory.TryWrite(gpa + 8, entry.Slice(8, 8)) || !memory.TryWrite(gpa + 1, entry.Slice(1, 7))) return Slot.Fault;
        Interlocked.MemoryBarrier();
        if (!memory.TryWriteByteRelease(gpa, entry[0])) return Slot.Fault;
        Tail = Tail + 1 == Entries ? 0 : Tail + 1;
        if (_outstanding == 0) _oldest = Tail == 0 ? Entries - 1 : Tail - 1;
        _outstanding++;
        if (_outstanding > MaxOutstanding) MaxOutstanding = _outstanding;
        Written++;
        return Slot.Written;
    }

    /// <summary>Guest-physical address of slot <paramref name="slot"/> in a queue laid out as <paramref name="segments"/>.</summary>
    public static bool TryLocateSlot(ReadOnlySpan<GuestSegment> segments, uint slot, out ulong gpa)
    {
        ulong offset = (ulong)slot * EntrySize;
        foreach (var s in segments)
        {
            if (offset < s.Length) { gpa = s.Address + offset; return true; }
            offset -= s.Length;
        }
        gpa = 0;
        return false;
    }
}

/// <summary>Where a front-end's entries for the guest come from (the output ring).</summary>
public interface IOutputSource
{
    /// <summary>Copies the oldest entry into <paramref name="entry"/>; false when there is none.</summary>
    bool TryPeek(Span<byte> entry);

    /// <summary>Removes the oldest entry.</summary>
    void Consume();
}
