using System.Threading;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Memory;

/// <summary>
/// Guest RAM as vmcd sees it: the memory table's sealed memfd regions mapped shared. This is where
/// every guest memory access is bounds-checked: an access must lie wholly inside one region
/// (overflow-safe arithmetic), otherwise it fails and touches nothing. A new table
/// (SET_MEM_TABLE) replaces the old one as a whole, between two ring items (one thread).
/// </summary>
public sealed unsafe class GuestMemoryMap : IGuestMemory, IDisposable
{
    private readonly record struct Region(ulong Gpa, ulong Size, SharedMapping Mapping);
    private Region[] _regions = [];

    /// <summary>
    /// Validates and maps a new table (one fd per region, consumed: every fd is disposed here),
    /// then unmaps the old one. On failure nothing changes and the error says why.
    /// </summary>
    public bool TryReplace(ReadOnlySpan<MemRegion> table, ReadOnlySpan<OwnedFd> fds, out string? error)
    {
        try
        {
            error = Validate(table, fds.Length);
            if (error != null) return false;
            var regions = new Region[table.Length];
            for (int i = 0; i < table.Length; i++)
            {
                var m = SharedMapping.TryMapSealed(fds[i], table[i].MmapOffset, table[i].Size, out string? why);
                if (m == null)
                {
                    error = $"region {i}: {why}";
                    for (int j = 0; j < i; j++) regions[j].Mapping.Dispose();
                    return false;
                }
                regions[i] = new Region(table[i].GuestPhysical, table[i].Size, m);
            }
            Unmap();
            _regions = regions;
            return true;
        }
        finally
        {
            foreach (var fd in fds) fd.Dispose();
        }
    }

    /// <summary>Table checks that need no syscalls: count, sizes, alignment, wrap-around, overlap.</summary>
    public static string? Validate(ReadOnlySpan<MemRegion> table, int fdCount)
    {
        if (table.Length is < 1 or > MemTableRequest.MaxRegions) return $"{table.Length} memory regions (1..{MemTableRequest.MaxRegions} allowed)";
        if (fdCount != table.Length) return $"{table.Length} memory regions but {fdCount} fds";
        for (int i = 0; i < table.Length; i++)
        {
            var r = table[i];
            if (r.Size == 0 || r.Size % 4096 != 0 || r.MmapOffset % 4096 != 0) return $"region {i}: size and offset must be multiples of 4 KiB, size non-zero";
            if (r.GuestPhysical + r.Size < r.GuestPhysical || r.MmapOffset + r.Size < r.MmapOffset) return $"region {i} wraps around";
            for (int j = 0; j < i; j++)
            {
                var o = table[j];
                if (r.GuestPhysical < o.GuestPhysical + o.Size && o.GuestPhysical < r.GuestPhysical + r.Size) return $"regions {j} and {i} overlap";
            }
        }
        return null;
    }

    private bool TryLocate(ulong gpa, ulong length, out byte* p)
    {
        foreach (var r in _regions)
        {
            if (gpa >= r.Gpa && gpa - r.Gpa < r.Size && length <= r.Size - (gpa - r.Gpa))
            {
                p = r.Mapping.Pointer + (gpa - r.Gpa);
                return true;
            }
        }
        p = null;
        return false;
    }

    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        if (!TryLocate(gpa, (ulong)destination.Length, out byte* p)) return false;
        new ReadOnlySpan<byte>(p, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> source)
    {
        if (!TryLocate(gpa, (ulong)source.Length, out byte* p)) return false;
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
        foreach (var r in _regions) r.Mapping.Dispose();
        _regions = [];
    }

    public void Dispose() => Unmap();
}
