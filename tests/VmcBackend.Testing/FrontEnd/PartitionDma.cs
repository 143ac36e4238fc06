using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing.FrontEnd;

/// <summary>
/// The partition's DMA memory as a front-end gives it: pages of guest RAM mapped at IOBAs in the
/// device's TCE table, deliberately scattered (IOBA pages ascend while guest-physical pages
/// descend, from the top of RAM down to <c>gpaFloor</c>) so every translation is exercised, and the
/// partition's own CPU accesses through that mapping. One implementation for the in-process model
/// and the reference front-end.
/// </summary>
public sealed class PartitionDma(TceTable tce, IGuestMemory ram, ulong ramSize, ulong gpaFloor = 0)
{
    private ulong _nextIoba = TceTable.PageSize;   // IOBA 0 stays unmapped
    private ulong _nextGpaTop = ramSize;

    public ulong Alloc(int bytes)
    {
        int pages = (bytes + TceTable.PageSize - 1) / TceTable.PageSize;
        ulong ioba = _nextIoba;
        for (int i = 0; i < pages; i++)
        {
            if (_nextGpaTop < gpaFloor + TceTable.PageSize) throw new InvalidOperationException("simulated guest RAM exhausted");
            _nextGpaTop -= TceTable.PageSize;
            tce.Map(_nextIoba, _nextGpaTop);
            _nextIoba += TceTable.PageSize;
        }
        return ioba;
    }

    public void Read(ulong ioba, Span<byte> destination) => Access(ioba, destination, default, write: false);
    public void Write(ulong ioba, ReadOnlySpan<byte> source) => Access(ioba, default, source, write: true);

    public byte ReadByteAcquire(ulong ioba)
    {
        if (!tce.TryTranslate(ioba, out ulong gpa) || !ram.TryReadByteAcquire(gpa, out byte b))
            throw new InvalidOperationException($"partition read of unmapped IOBA {ioba:X}");
        return b;
    }

    public void WriteByte(ulong ioba, byte value)
    {
        if (!tce.TryTranslate(ioba, out ulong gpa) || !ram.TryWriteByteRelease(gpa, value))
            throw new InvalidOperationException($"partition write of unmapped IOBA {ioba:X}");
    }

    private void Access(ulong ioba, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length, at = 0;
        while (at < length)
        {
            ulong a = ioba + (ulong)at;
            int n = (int)Math.Min((ulong)(length - at), TceTable.PageSize - a % TceTable.PageSize);
            if (!tce.TryTranslate(a, out ulong gpa)) throw new InvalidOperationException($"partition access of unmapped IOBA {a:X}");
            bool ok = write ? ram.TryWrite(gpa, src.Slice(at, n)) : ram.TryRead(gpa, dst.Slice(at, n));
            if (!ok) throw new InvalidOperationException($"partition access outside guest RAM at {gpa:X}");
            at += n;
        }
    }
}
