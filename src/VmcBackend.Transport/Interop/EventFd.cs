using Tmds.Linux;

namespace VmcBackend.Transport.Interop;

/// <summary>An eventfd (kick, call, done or a connection's stop signal), owned.</summary>
public sealed unsafe class EventFd : IDisposable
{
    private readonly OwnedFd _fd;

    private EventFd(OwnedFd fd) => _fd = fd;

    /// <summary>A new non-blocking eventfd.</summary>
    public static EventFd Create()
    {
        int fd = LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (fd < 0) throw new IOException($"eventfd failed: {Errno.Describe(Errno.Last)}");
        return new EventFd(new OwnedFd(fd));
    }

    /// <summary>
    /// Takes ownership of a received fd if it is an eventfd; otherwise disposes it and says why.
    /// Its flags are left alone (they belong to the open file description the front-end shares):
    /// vmcd reads a received eventfd only after epoll reported it readable.
    /// </summary>
    public static EventFd? TryAdopt(OwnedFd fd, out string? error)
    {
        error = null;
        if (IsEventFd(fd.Fd)) return new EventFd(fd);
        error = "not an eventfd";
        fd.Dispose();
        return null;
    }

    /// <summary>True if <paramref name="fd"/> is an eventfd (the kernel names its inode "[eventfd]").</summary>
    public static bool IsEventFd(int fd)
    {
        byte* path = stackalloc byte[32];
        byte* target = stackalloc byte[64];
        var p = new Span<byte>(path, 32);
        p.Clear();
        System.Text.Encoding.ASCII.GetBytes($"/proc/self/fd/{fd}", p);
        long n = LibC.readlink(path, target, 64);
        return n > 0 && new ReadOnlySpan<byte>(target, (int)n).SequenceEqual("anon_inode:[eventfd]"u8);
    }

    public int Fd => _fd.Fd;

    /// <summary>Adds 1 to the counter (wakes the other side). False if the write failed.</summary>
    public bool Signal()
    {
        ulong one = 1;
        long n;
        do n = LibC.write(_fd.Fd, &one, 8);
        while (n < 0 && LibC.errno == LibC.EINTR);
        // EAGAIN means the counter is saturated: the other side is already woken.
        return n == 8 || (n < 0 && LibC.errno == LibC.EAGAIN);
    }

    /// <summary>Reads and resets the counter; 0 if nothing was pending (call it on a received fd only when it is readable).</summary>
    public ulong Drain()
    {
        ulong v = 0;
        long n;
        do n = LibC.read(_fd.Fd, &v, 8);
        while (n < 0 && LibC.errno == LibC.EINTR);
        return n == 8 ? v : 0;
    }

    public void Dispose() => _fd.Dispose();
}
