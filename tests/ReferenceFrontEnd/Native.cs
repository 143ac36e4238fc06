using System.Runtime.InteropServices;
using Tmds.Linux;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>A file descriptor the test front-end owns (closed once).</summary>
public sealed class Fd : SafeHandle
{
    public Fd(int fd) : base(-1, true) => SetHandle(fd);
    public override bool IsInvalid => (int)handle < 0;
    public int Number => (int)handle;
    protected override bool ReleaseHandle() => LibC.close((int)handle) == 0;

    public static Fd Check(int fd, string what) => fd >= 0 ? new Fd(fd) : throw new IOException($"{what} failed: errno {LibC.errno}");

    /// <summary>A non-blocking eventfd.</summary>
    public static Fd EventFd() => Check(LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK), "eventfd");

    public unsafe void Signal()
    {
        ulong one = 1;
        LibC.write(Number, &one, 8);
    }

    public unsafe ulong Drain()
    {
        ulong v = 0;
        return LibC.read(Number, &v, 8) == 8 ? v : 0;
    }

    /// <summary>Waits until the fd is readable or <paramref name="ms"/> passed.</summary>
    public unsafe bool WaitReadable(int ms)
    {
        var p = new pollfd { fd = Number, events = LibC.POLLIN };
        return LibC.poll(&p, 1, ms) > 0;
    }
}

/// <summary>A memfd mapped shared into the test process (guest RAM, the channel), sealed like QEMU's by default.</summary>
public sealed unsafe class Memfd : IDisposable
{
    public Memfd(string name, ulong size, bool seal = true)
    {
        byte[] n = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* p = n) File = Fd.Check(LibC.memfd_create(p, LibC.MFD_CLOEXEC | LibC.MFD_ALLOW_SEALING), "memfd_create");
        if (LibC.ftruncate(File.Number, (long)size) != 0) throw new IOException($"ftruncate failed: errno {LibC.errno}");
        if (seal && LibC.fcntl(File.Number, LibC.F_ADD_SEALS, LibC.F_SEAL_SHRINK | LibC.F_SEAL_GROW) != 0)
            throw new IOException($"F_ADD_SEALS failed: errno {LibC.errno}");
        Size = size;
        void* m = LibC.mmap(null, (size_t)size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, File.Number, 0);
        if (m == LibC.MAP_FAILED) throw new IOException($"mmap failed: errno {LibC.errno}");
        Pointer = (byte*)m;
    }

    public Fd File { get; }
    public ulong Size { get; }
    public byte* Pointer { get; private set; }
    public Span<byte> Span => new(Pointer, (int)Math.Min(Size, int.MaxValue));

    public void Dispose()
    {
        if (Pointer != null) LibC.munmap(Pointer, (size_t)Size);
        Pointer = null;
        File.Dispose();
    }
}
