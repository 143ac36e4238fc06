namespace VmcBackend.Engine.Buffers;

/// <summary>
/// The hypervisor-side buffer memory, addressed by remote IOBAs (the second DMA window of the
/// device). Buffer (HMC index i, id j) lives at slot i * MaxPool + j, each slot MaxMtu bytes, so the
/// layout does not move when a renegotiation changes the MTU or pool size.
/// </summary>
internal sealed class RemoteWindow
{
    private readonly byte[] _memory;

    public RemoteWindow(int maxHmcs, int maxPool, int maxMtu)
    {
        MaxPool = maxPool;
        SlotSize = maxMtu;
        _memory = new byte[checked(maxHmcs * maxPool * maxMtu)];
    }

    public int MaxPool { get; }
    public int SlotSize { get; }
    public ulong Size => (ulong)_memory.Length;

    public uint IobaOf(int hmcIndex, int bufferId) => (uint)((hmcIndex * MaxPool + bufferId) * SlotSize);

    public Span<byte> Buffer(int hmcIndex, int bufferId) => _memory.AsSpan((hmcIndex * MaxPool + bufferId) * SlotSize, SlotSize);

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

    public Span<byte> Range(ulong ioba, int length) => _memory.AsSpan((int)ioba, length);
}
