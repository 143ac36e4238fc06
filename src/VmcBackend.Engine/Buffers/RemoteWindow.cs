namespace VmcBackend.Engine.Buffers;

/// <summary>
/// The hypervisor-side buffer memory, addressed by remote IOBAs (the second DMA window of the
/// device). Buffer (HMC index i, id j) lives at slot i * MaxPool + j, each slot MaxMtu bytes, so the
/// layout does not move when a renegotiation changes the MTU or pool size. Each slot is its own
/// array (small enough for the small-object heap, which the GC compacts: a back-end created per
/// connection leaves no large-object-heap fragments behind); a range never spans two slots.
/// </summary>
internal sealed class RemoteWindow
{
    private readonly byte[][] _slots;

    public RemoteWindow(int maxHmcs, int maxPool, int maxMtu)
    {
        MaxPool = maxPool;
        SlotSize = maxMtu;
        _slots = new byte[checked(maxHmcs * maxPool)][];
        for (int i = 0; i < _slots.Length; i++) _slots[i] = new byte[maxMtu];
    }

    public int MaxPool { get; }
    public int SlotSize { get; }
    public ulong Size => (ulong)_slots.Length * (ulong)SlotSize;

    public uint IobaOf(int hmcIndex, int bufferId) => (uint)((hmcIndex * MaxPool + bufferId) * SlotSize);

    public Span<byte> Buffer(int hmcIndex, int bufferId) => _slots[hmcIndex * MaxPool + bufferId];

    /// <summary>Maps a remote range to (index, id, offset). False if it is outside the window.</summary>
    public bool TryLocate(ulong ioba, ulong length, out int hmcIndex, out int bufferId, out int offset)
    {
        hmcIndex = bufferId = offset = 0;
        if (ioba >= Size || length > Size - ioba) return false;
        ulong slot = ioba / (ulong)SlotSize;
        offset = (int)(ioba % (ulong)SlotSize);
        hmcIndex = (int)(slot / (ulong)MaxPool);
        bufferId = (int)(slot % (ulong)MaxPool);
        return true;
    }

    /// <summary>[ioba, ioba + length) of one slot; the caller has checked it lies inside one buffer.</summary>
    public Span<byte> Range(ulong ioba, int length)
        => _slots[(int)(ioba / (ulong)SlotSize)].AsSpan((int)(ioba % (ulong)SlotSize), length);
}
