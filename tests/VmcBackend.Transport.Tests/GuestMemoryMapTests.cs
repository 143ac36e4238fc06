using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Tests;

public class GuestMemoryMapTests
{
    private Memfd _a = null!, _b = null!;
    private GuestMemoryMap _map = null!;
    private const ulong Base = 0x10_0000, Size = 0x10000;

    private static OwnedFd Dup(Memfd m) => new(Tmds.Linux.LibC.dup(m.File.Number));

    [SetUp]
    public void Map()
    {
        _a = new Memfd("a", Size);
        _b = new Memfd("b", Size);
        _map = new GuestMemoryMap();
        // Two adjacent regions: [Base, Base+Size) from a, [Base+Size, Base+2*Size) from b.
        Assert.That(_map.TryReplace([new MemRegion(Base, Size, 0), new MemRegion(Base + Size, Size, 0)], [Dup(_a), Dup(_b)], out var err), err);
    }

    [TearDown]
    public void Unmap() { _map.Dispose(); _a.Dispose(); _b.Dispose(); }

    [Test]
    public void AccessesReachTheMemfd()
    {
        Assert.That(_map.TryWrite(Base + 10, [1, 2, 3]));
        Assert.That(_a.Span[10..13].ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }));
        Assert.That(_map.TryWriteByteRelease(Base + Size, 9));
        Assert.That(_b.Span[0], Is.EqualTo(9));
        Assert.That(_map.TryReadByteAcquire(Base + Size, out byte v) && v == 9);
    }

    [Test]
    public void Edges()
    {
        var one = new byte[1];
        Assert.That(_map.TryRead(Base + 2 * Size - 1, one), "last byte");
        Assert.That(_map.TryRead(Base + 2 * Size, one), Is.False, "one past the end");
        Assert.That(_map.TryRead(Base - 1, one), Is.False, "one before the start");
        Assert.That(_map.TryRead(Base + Size - 2, new byte[4]), Is.False, "across two adjacent regions");
        Assert.That(_map.TryWrite(ulong.MaxValue, one), Is.False);
        Assert.That(_map.TryWrite(ulong.MaxValue - 1, new byte[4]), Is.False, "wraps around 2^64");
        Assert.That(_map.TryRead(Base + Size, []), "zero length inside");
        Assert.That(_map.TryRead(Base, new byte[Size]), "a whole region");
        Assert.That(_map.TryRead(Base, new byte[Size + 1]), Is.False);
    }

    [Test]
    public void InvalidTablesChangeNothingAndCloseTheirFds()
    {
        Assert.That(_map.TryReplace([new MemRegion(0, Size, 0), new MemRegion(Size / 2, Size, 0)], [Dup(_a), Dup(_b)], out var e1), Is.False);
        Assert.That(e1, Does.Contain("overlap"));
        Assert.That(_map.TryReplace([new MemRegion(0, 2 * Size, 0)], [Dup(_a)], out var e2), Is.False, "region larger than the fd");
        Assert.That(e2, Does.Contain("bytes"));
        using (var efd = Fd.EventFd())
        {
            Assert.That(_map.TryReplace([new MemRegion(0, 4096, 0)], [new OwnedFd(Tmds.Linux.LibC.dup(efd.Number))], out var e3), Is.False);
            Assert.That(e3, Does.Contain("memfd"));
        }
        Assert.That(_map.TryReplace([new MemRegion(0, 4096, 0)], [], out _), Is.False);
        Assert.That(_map.TryReplace([new MemRegion(0, 4096, 4096 * 100)], [Dup(_a)], out _), Is.False, "offset beyond the fd");
        Assert.That(_map.TryRead(Base, new byte[8]) && _map.TryRead(Base + Size, new byte[8]), "the old table is still in place");
    }

    [Test]
    public void UnsealedMemfdIsRefused()
    {
        using var unsealed = new Memfd("unsealed", Size, seal: false);
        Assert.That(_map.TryReplace([new MemRegion(0, Size, 0)], [Dup(unsealed)], out var e), Is.False);
        Assert.That(e, Does.Contain("sealed"));
        Assert.That(_map.TryRead(Base + Size, new byte[8]), "the old table is still in place");
    }

    [Test]
    public void ReplacingUnmapsTheOldTable()
    {
        Assert.That(_map.TryReplace([new MemRegion(0, Size, 0)], [Dup(_b)], out _));
        Assert.That(_map.TryRead(Base, new byte[1]), Is.False);
        Assert.That(_map.TryWrite(0, [7]));
        Assert.That(_b.Span[0], Is.EqualTo(7));
    }
}
