using System.Threading;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Interop;

namespace VmcBackend.Transport.Memory;

/// <summary>One guest RAM region: guest-physical range mapped from a memfd.</summary>
public readonly record struct GuestRegion(ulong GuestPhysical, ulong Size, ulong MmapOffset);

/// <summary>
/// Guest RAM as vmcd sees it: the memory table's memfd regions mapped MAP_SHARED. This is where
/// every guest memory access is bounds-checked: an access must lie wholly inside one region
/// (overflow-safe arithmetic), otherwise it fails and touches nothing.
/// </summary>
public sealed unsafe class GuestMemoryMap : IGuestMemory, IDisposable
{
    private readonly record struct Mapping(ulong Gpa, ulong Size, nint Base);
    private Mapping[] _maps = [];

    public int RegionCount => _maps.Length;

    /// <summary>
    /// Validates and maps a new table, then unmaps the old one. On failure nothing changes, the
    /// error says why, and the caller still owns (and closes) the fds.
    /// </summary>
    public bool TryReplace(ReadOnlySpan<GuestRegion> regions, ReadOnlySpan<int> fds, out string? error)
    {
        error = Validate(regions, fds.Length);
        if (error != null) return false;
        var maps = new Mapping[regions.Length];
        for (int i = 0; i < regions.Length; i++)
        {
            var r = regions[i];
            if (!LibC.TryFstat(fds[i], out uint mode, out long fileSize) || (mode & LibC.S_IFMT) != LibC.S_IFREG)
                error = $"region {i}: fd is not a memory file (memfd)";
            else if ((ulong)fileSize < r.MmapOffset + r.Size)
                error = $"region {i}: fd holds {fileSize} bytes, the region needs {r.MmapOffset + r.Size}";
            else
            {
                nint p = LibC.Mmap(0, (nuint)r.Size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fds[i], (long)r.MmapOffset);
                if (p == LibC.MapFailed) error = $"region {i}: mmap failed (errno {LibC.LastError})";
                else { maps[i] = new Mapping(r.GuestPhysical, r.Size, p); continue; }
            }
            for (int j = 0; j < i; j++) LibC.Munmap(maps[j].Base, (nuint)maps[j].Size);
            return false;
        }
        Unmap();
        _maps = maps;
        return true;
    }

    /// <summary>Table checks that need no syscalls: count, sizes, alignment, wrap-around, overlap.</summary>
    public static string? Validate(ReadOnlySpan<GuestRegion> regions, int fdCount)
    {
        if (regions.Length is < 1 or > Protocol.VmcUserLayout.MaxRegions) return $"{regions.Length} memory regions (1..{Protocol.VmcUserLayout.MaxRegions} allowed)";
        if (fdCount != regions.Length) return $"{regions.Length} memory regions but {fdCount} fds";
        for (int i = 0; i < regions.Length; i++)
        {
            var r = regions[i];
            if (r.Size == 0 || r.Size % 4096 != 0 || r.MmapOffset % 4096 != 0) return $"region {i}: size/offset must be non-zero multiples of 4 KiB";
            if (r.GuestPhysical + r.Size < r.GuestPhysical || r.MmapOffset + r.Size < r.MmapOffset) return $"region {i} wraps around";
            for (int j = 0; j < i; j++)
            {
                var o = regions[j];
                if (r.GuestPhysical < o.GuestPhysical + o.Size && o.GuestPhysical < r.GuestPhysical + r.Size) return $"regions {j} and {i} overlap";
            }
        }
        return null;
    }

    private bool TryLocate(ulong gpa, int length, out byte* p)
    {
        foreach (var m in _maps)
        {
            if (gpa >= m.Gpa && gpa - m.Gpa < m.Size && (ulong)length <= m.Size - (gpa - m.Gpa))
            {
                p = (byte*)m.Base + (gpa - m.Gpa);
                return true;
            }
        }
        p = null;
        return false;
    }

    /// <summary>True if [gpa, gpa+length) lies inside one region.</summary>
    public bool Contains(ulong gpa, ulong length) => length <= int.MaxValue && TryLocate(gpa, (int)length, out _);

    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        if (!TryLocate(gpa, destination.Length, out byte* p)) return false;
        new ReadOnlySpan<byte>(p, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> source)
    {
        if (!TryLocate(gpa, source.Length, out byte* p)) return false;
        source.CopyTo(new Span<byte>(p, source.Length));
        return true;
    }

    public bool TryReadByteAcquire(ulong gpa, out byte value)
    {
        value = 0;
        if (!TryLocate(gpa, 1, out byte* p)) return false;
        value = Volatile.Read(ref *p);
        return true;
    }

    public bool TryWriteByteRelease(ulong gpa, byte value)
    {
        if (!TryLocate(gpa, 1, out byte* p)) return false;
        Volatile.Write(ref *p, value);
        return true;
    }

    private void Unmap()
    {
        foreach (var m in _maps) LibC.Munmap(m.Base, (nuint)m.Size);
        _maps = [];
    }

    public void Dispose() => Unmap();
}
