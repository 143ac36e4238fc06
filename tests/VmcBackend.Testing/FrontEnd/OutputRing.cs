namespace VmcBackend.Testing.FrontEnd;

/// <summary>The output ring (OQ) of an in-process front-end: a bounded FIFO of 16-byte entries,
/// 1024 deep like vmc-user version 2's.</summary>
public sealed class OutputRing(int capacity = 1024) : IOutputSource
{
    private readonly byte[] _ring = new byte[capacity * 16];
    private int _head, _count;

    public int Capacity => capacity;
    public int Count => _count;
    public long Appended { get; private set; }

    public bool TryAppend(ReadOnlySpan<byte> entry)
    {
        if (entry.Length != 16 || _count == capacity) return false;
        entry.CopyTo(_ring.AsSpan(((_head + _count) % capacity) * 16, 16));
        _count++;
        Appended++;
        return true;
    }

    public bool TryPeek(Span<byte> entry)
    {
        if (_count == 0) return false;
        _ring.AsSpan(_head * 16, 16).CopyTo(entry);
        return true;
    }

    public void Consume()
    {
        _head = (_head + 1) % capacity;
        _count--;
    }

    /// <summary>Discards everything (the entries belonged to an older queue, or the back-end was lost).</summary>
    public void Clear() => _head = _count = 0;
}
