using VmcBackend.Transport.Interop;

namespace VmcBackend.Transport.Memory;

/// <summary>A memfd of a fixed size mapped shared into this process (the front-end's guest RAM, the CRQ state page).</summary>
public sealed unsafe class SharedMemfd : IDisposable
{
    public SharedMemfd(string name, ulong size)
    {
        Fd = LibC.MemfdCreate(name, LibC.MFD_CLOEXEC);
        if (Fd < 0) throw new IOException($"memfd_create failed: errno {LibC.LastError}");
        if (LibC.Ftruncate(Fd, (long)size) != 0) throw new IOException($"ftruncate failed: errno {LibC.LastError}");
        Size = size;
        Base = LibC.Mmap(0, (nuint)size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, Fd, 0);
        if (Base == LibC.MapFailed) throw new IOException($"mmap failed: errno {LibC.LastError}");
    }

    /// <summary>Maps an existing fd (not owned).</summary>
    public static bool TryMap(int fd, ulong size, out nint address)
    {
        address = LibC.Mmap(0, (nuint)size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fd, 0);
        return address != LibC.MapFailed;
    }

    public int Fd { get; private set; }
    public ulong Size { get; }
    public nint Base { get; private set; }
    public Span<byte> Span => new((void*)Base, (int)Math.Min(Size, int.MaxValue));

    public void Dispose()
    {
        if (Base != 0 && Base != LibC.MapFailed) LibC.Munmap(Base, (nuint)Size);
        if (Fd >= 0) LibC.Close(Fd);
        Base = 0;
        Fd = -1;
    }
}
