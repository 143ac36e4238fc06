using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Crq;

/// <summary>
/// Writes 16-byte entries into the guest's CRQ, which lives in guest memory as a list of
/// guest-physical segments. A slot is written only when its valid byte is 0 (the guest consumed
/// it): bytes 1..15 first, then the valid byte with release semantics. Entries that find the queue
/// full wait, in order, in a bounded backlog that <see cref="Drain"/> retries.
/// </summary>
public sealed class CrqWriter
{
    private readonly IGuestMemory _memory;
    private readonly IGuestNotifier _notifier;
    private readonly byte[] _backlog;        // ring of 16-byte entries
    private readonly int _backlogCapacity;
    private int _backlogHead, _backlogCount;
    private GuestSegment[] _segments = [];
    private int _segmentCount;

    public CrqWriter(IGuestMemory memory, IGuestNotifier notifier, int backlogCapacity)
    {
        _memory = memory;
        _notifier = notifier;
        _backlogCapacity = Math.Max(1, backlogCapacity);
        _backlog = new byte[_backlogCapacity * CrqEntry.Size];
    }

    public bool IsRegistered => Entries != 0;
    public uint Entries { get; private set; }
    public uint Tail { get; private set; }
    public int BacklogCount => _backlogCount;
    /// <summary>Entries written since the queue was first registered.</summary>
    public long TotalWritten { get; private set; }
    private int _written;   // since the last TakeWritten

    /// <summary>Validates and adopts a queue. Returns false (nothing adopted) when the layout is invalid.</summary>
    public bool Register(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail)
    {
        if (entries == 0 || entries > 1 << 20 || tail >= entries || segments.Length == 0) return false;
        ulong total = 0;
        foreach (var s in segments)
        {
            if (s.Length == 0 || s.Length % CrqEntry.Size != 0 || s.Address + s.Length < s.Address) return false;
            total += s.Length;
        }
        if (total != (ulong)entries * CrqEntry.Size) return false;
        if (_segments.Length < segments.Length) _segments = new GuestSegment[segments.Length];
        segments.CopyTo(_segments);
        _segmentCount = segments.Length;
        Entries = entries;
        Tail = tail;
        _backlogHead = _backlogCount = 0;
        return true;
    }

    public void Unregister()
    {
        Entries = 0;
        Tail = 0;
        _segmentCount = 0;
        _backlogHead = _backlogCount = 0;
    }

    /// <summary>Queues one entry for the guest. False when the queue is gone or broken, or the backlog is full.</summary>
    public bool Post(ReadOnlySpan<byte> entry)
    {
        if (!IsRegistered) return false;
        if (_backlogCount == 0)
        {
            var r = TryWriteSlot(entry);
            if (r == SlotResult.Written) return true;
            if (r == SlotResult.Fault) return false;
        }
        if (_backlogCount == _backlogCapacity) return false;
        entry[..CrqEntry.Size].CopyTo(_backlog.AsSpan(((_backlogHead + _backlogCount) % _backlogCapacity) * CrqEntry.Size, CrqEntry.Size));
        _backlogCount++;
        return true;
    }

    /// <summary>Moves backlogged entries into slots the guest has freed. False if guest memory faulted.</summary>
    public bool Drain()
    {
        while (_backlogCount > 0 && IsRegistered)
        {
            var r = TryWriteSlot(_backlog.AsSpan(_backlogHead * CrqEntry.Size, CrqEntry.Size));
            if (r == SlotResult.Full) return true;
            if (r == SlotResult.Fault) return false;
            _backlogHead = (_backlogHead + 1) % _backlogCapacity;
            _backlogCount--;
        }
        return true;
    }

    /// <summary>Number of entries written since the last call (the caller raises one interrupt for them).</summary>
    public int TakeWritten()
    {
        int n = _written;
        _written = 0;
        return n;
    }

    private enum SlotResult { Written, Full, Fault }

    private SlotResult TryWriteSlot(ReadOnlySpan<byte> entry)
    {
        if (!TryLocate(Tail, out ulong gpa)) return SlotResult.Fault;
        if (!_memory.TryReadByteAcquire(gpa, out byte valid)) return SlotResult.Fault;
        if (valid != 0) return SlotResult.Full;
        if (!_memory.TryWrite(gpa + 1, entry.Slice(1, CrqEntry.Size - 1))) return SlotResult.Fault;
        if (!_memory.TryWriteByteRelease(gpa, entry[0])) return SlotResult.Fault;
        Tail = Tail + 1 == Entries ? 0 : Tail + 1;
        _written++;
        TotalWritten++;
        _notifier.QueueTailMoved(Tail);
        return SlotResult.Written;
    }

    private bool TryLocate(uint slot, out ulong gpa) => TryLocateSlot(_segments.AsSpan(0, _segmentCount), slot, out gpa);

    /// <summary>Guest-physical address of CRQ slot <paramref name="slot"/> in a queue laid out as <paramref name="segments"/>.</summary>
    public static bool TryLocateSlot(ReadOnlySpan<GuestSegment> segments, uint slot, out ulong gpa)
    {
        ulong offset = (ulong)slot * CrqEntry.Size;
        foreach (var s in segments)
        {
            if (offset < s.Length) { gpa = s.Address + offset; return true; }
            offset -= s.Length;
        }
        gpa = 0;
        return false;
    }
}
