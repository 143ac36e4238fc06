namespace VmcBackend.Control.Trace;

/// <summary>
/// A bounded byte ring between one producer (a VM's connection thread, which writes whole
/// records) and one consumer (a trace reader's pump, which forwards bytes). The producer never
/// waits: a record that does not fit is dropped and counted, and the next one that fits is
/// preceded by a LOST record carrying the count (<see cref="TraceRecorder"/> does that).
/// </summary>
public sealed class RecordRing
{
    private readonly byte[] _data;
    private readonly int _mask;
    private long _head;      // consumer's position (written by the consumer only)
    private long _tail;      // producer's position (written by the producer only)
    private long _lostTotal;
    private volatile bool _ended;

    /// <param name="capacity">Bytes; rounded up to a power of two.</param>
    public RecordRing(int capacity)
    {
        int size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(capacity, 1024));
        _data = new byte[size];
        _mask = size - 1;
    }

    public int Capacity => _data.Length;

    /// <summary>Records dropped and not yet reported in a LOST record (producer's own).</summary>
    public long PendingLost { get; set; }

    /// <summary>Every record dropped so far.</summary>
    public long LostTotal => Volatile.Read(ref _lostTotal);

    /// <summary>The producer is done (its VM ended or it stopped tracing): what is left is the last of it.</summary>
    public bool Ended => _ended;

    public int Free => _data.Length - (int)(_tail - Volatile.Read(ref _head));

    /// <summary>Producer: appends a record if it fits whole; otherwise counts it lost.</summary>
    public bool TryWrite(ReadOnlySpan<byte> record)
    {
        if (record.Length > Free)
        {
            CountLost();
            return false;
        }
        int at = (int)(_tail & _mask);
        int first = Math.Min(record.Length, _data.Length - at);
        record[..first].CopyTo(_data.AsSpan(at));
        record[first..].CopyTo(_data);
        Volatile.Write(ref _tail, _tail + record.Length);
        return true;
    }

    /// <summary>Producer: one record was dropped.</summary>
    public void CountLost()
    {
        PendingLost++;
        Interlocked.Increment(ref _lostTotal);
    }

    /// <summary>Producer: no more records will come.</summary>
    public void End() => _ended = true;

    /// <summary>Consumer: the bytes available now, as up to two contiguous pieces (call <see cref="Consumed"/> after using them).</summary>
    public (ReadOnlyMemory<byte> First, ReadOnlyMemory<byte> Second) Available()
    {
        long tail = Volatile.Read(ref _tail);
        int n = (int)(tail - _head);
        if (n == 0) return (default, default);
        int at = (int)(_head & _mask);
        int first = Math.Min(n, _data.Length - at);
        return (_data.AsMemory(at, first), _data.AsMemory(0, n - first));
    }

    /// <summary>Consumer: frees <paramref name="bytes"/> bytes.</summary>
    public void Consumed(int bytes) => Volatile.Write(ref _head, _head + bytes);

    /// <summary>Consumer: true when nothing is left to read.</summary>
    public bool IsEmpty => Volatile.Read(ref _tail) == _head;
}
