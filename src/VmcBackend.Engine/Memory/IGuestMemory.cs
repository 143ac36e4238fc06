namespace VmcBackend.Engine.Memory;

/// <summary>
/// Guest-physical memory as the engine sees it. Every access is bounds-checked by the
/// implementation: an access not wholly inside one mapped region returns false and touches nothing.
/// Implementations: the transport's memfd mapping table, the tests' array-backed memory.
/// </summary>
public interface IGuestMemory
{
    bool TryRead(ulong guestPhysical, Span<byte> destination);
    bool TryWrite(ulong guestPhysical, ReadOnlySpan<byte> source);

    /// <summary>Reads one byte with acquire semantics (a CRQ slot's valid byte).</summary>
    bool TryReadByteAcquire(ulong guestPhysical, out byte value);

    /// <summary>Writes one byte with release semantics: every earlier store is visible first.</summary>
    bool TryWriteByteRelease(ulong guestPhysical, byte value);
}

/// <summary>One contiguous guest-physical range (a translated TCE page run, a queue segment).</summary>
public readonly record struct GuestSegment(ulong Address, ulong Length);
