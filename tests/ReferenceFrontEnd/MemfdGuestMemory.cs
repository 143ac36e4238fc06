using System.Threading;
using VmcBackend.Engine.Memory;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>The front-end's own view of guest RAM: one memfd at guest-physical 0, bounds-checked.</summary>
public sealed unsafe class MemfdGuestMemory(Memfd ram) : IGuestMemory
{
    private bool TryLocate(ulong gpa, int length, out byte* p)
    {
        p = null;
        if (gpa >= ram.Size || (ulong)length > ram.Size - gpa) return false;
        p = ram.Pointer + gpa;
        return true;
    }

    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        if (!TryLocate(gpa, destination.Length, out var p)) return false;
        new ReadOnlySpan<byte>(p, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> source)
    {
        if (!TryLocate(gpa, source.Length, out var p)) return false;
        source.CopyTo(new Span<byte>(p, source.Length));
        return true;
    }

    public bool TryReadByteAcquire(ulong gpa, out byte value)
    {
        value = 0;
        if (!TryLocate(gpa, 1, out var p)) return false;
        value = Volatile.Read(ref *p);
        return true;
    }

    public bool TryWriteByteRelease(ulong gpa, byte value)
    {
        if (!TryLocate(gpa, 1, out var p)) return false;
        Volatile.Write(ref *p, value);
        return true;
    }
}
