using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing;

/// <summary>
/// A QEMU-like TCE table for the device's local DMA window: 4 KiB IOBA pages mapped to
/// guest-physical pages with read/write permission, translated page by page the way the
/// spapr-vmc device translates the local side of H_REG_CRQ and H_COPY_RDMA.
/// </summary>
public sealed class TceTable
{
    public const int PageSize = 4096;
    private readonly ulong[] _gpa;
    private readonly byte[] _perm; // bit 0 read, bit 1 write; 0 = unmapped

    public TceTable(ulong windowSize)
    {
        _gpa = new ulong[windowSize / PageSize];
        _perm = new byte[_gpa.Length];
    }

    public ulong WindowSize => (ulong)_gpa.Length * PageSize;

    public void Map(ulong ioba, ulong gpa, bool read = true, bool write = true)
    {
        _gpa[ioba / PageSize] = gpa & ~(ulong)(PageSize - 1);
        _perm[ioba / PageSize] = (byte)((read ? 1 : 0) | (write ? 2 : 0));
    }

    public void Unmap(ulong ioba) => _perm[ioba / PageSize] = 0;

    /// <summary>
    /// Translates [ioba, ioba+length) into guest-physical segments (adjacent pages merged).
    /// False if any page is outside the window, unmapped, lacks the permission, or the list
    /// does not fit in <paramref name="segments"/>.
    /// </summary>
    public bool TryTranslate(ulong ioba, ulong length, bool needWrite, Span<GuestSegment> segments, out int count)
    {
        count = 0;
        if (length == 0) return true;
        if (ioba >= WindowSize || length > WindowSize - ioba) return false;
        ulong at = ioba, left = length;
        while (left > 0)
        {
            ulong page = at / PageSize;
            byte perm = _perm[page];
            if (perm == 0 || (needWrite ? (perm & 2) == 0 : (perm & 1) == 0)) return false;
            ulong off = at % PageSize;
            ulong n = Math.Min(left, PageSize - off);
            ulong gpa = _gpa[page] + off;
            if (count > 0 && segments[count - 1].Address + segments[count - 1].Length == gpa)
                segments[count - 1] = segments[count - 1] with { Length = segments[count - 1].Length + n };
            else
            {
                if (count == segments.Length) return false;
                segments[count++] = new GuestSegment(gpa, n);
            }
            at += n;
            left -= n;
        }
        return true;
    }

    /// <summary>Translates one address (for the partition's own CPU accesses).</summary>
    public bool TryTranslate(ulong ioba, out ulong gpa)
    {
        gpa = 0;
        if (ioba >= WindowSize || _perm[ioba / PageSize] == 0) return false;
        gpa = _gpa[ioba / PageSize] + ioba % PageSize;
        return true;
    }
}
