using System.Threading;
using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing;

/// <summary>
/// Guest RAM as a managed array starting at guest-physical 0, bounds-checked like the daemon's
/// memfd map. Counts refused accesses so tests can prove the engine only touched registered ranges.
/// </summary>
public sealed class ArrayGuestMemory(int size) : IGuestMemory
{
    public byte[] Ram { get; } = new byte[size];
    public long RefusedAccesses { get; private set; }
    public long Accesses { get; private set; }

    private bool Check(ulong gpa, int length)
    {
        Accesses++;
        if (gpa <= (ulong)Ram.Length && (ulong)length <= (ulong)Ram.Length - gpa) return true;
        RefusedAccesses++;
        return false;
    }

    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        if (!Check(gpa, destination.Length)) return false;
        Ram.AsSpan((int)gpa, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> source)
    {
        if (!Check(gpa, source.Length)) return false;
        source.CopyTo(Ram.AsSpan((int)gpa, source.Length));
        return true;
    }

    public bool TryReadByteAcquire(ulong gpa, out byte value)
    {
        value = 0;
        if (!Check(gpa, 1)) return false;
        value = Volatile.Read(ref Ram[(int)gpa]);
        return true;
    }

    public bool TryWriteByteRelease(ulong gpa, byte value)
    {
        if (!Check(gpa, 1)) return false;
        Volatile.Write(ref Ram[(int)gpa], value);
        return true;
    }
}
