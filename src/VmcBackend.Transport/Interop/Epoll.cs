using Tmds.Linux;

namespace VmcBackend.Transport.Interop;

/// <summary>An epoll instance (owned) waiting on a few fds, each registered with a small tag.</summary>
public sealed unsafe class Epoll : IDisposable
{
    private readonly OwnedFd _fd;

    public Epoll()
    {
        int fd = LibC.epoll_create1(LibC.EPOLL_CLOEXEC);
        if (fd < 0) throw new IOException($"epoll_create1 failed: {Errno.Describe(Errno.Last)}");
        _fd = new OwnedFd(fd);
    }

    /// <summary>Watches <paramref name="fd"/> for input (and hang-up); events carry <paramref name="tag"/>.</summary>
    public void Add(int fd, uint tag)
    {
        var ev = new epoll_event { events = LibC.EPOLLIN | LibC.EPOLLRDHUP };
        ev.data.u64 = tag;
        if (LibC.epoll_ctl(_fd.Fd, LibC.EPOLL_CTL_ADD, fd, &ev) != 0)
            throw new IOException($"epoll_ctl failed: {Errno.Describe(Errno.Last)}");
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> (-1: forever); returns the tags that fired, as bits.</summary>
    public uint Wait(int timeoutMs)
    {
        epoll_event* events = stackalloc epoll_event[4];
        int n = LibC.epoll_wait(_fd.Fd, events, 4, timeoutMs);
        if (n < 0) return LibC.errno == LibC.EINTR ? 0u : throw new IOException($"epoll_wait failed: {Errno.Describe(Errno.Last)}");
        uint tags = 0;
        for (int i = 0; i < n; i++) tags |= 1u << (int)events[i].data.u64;
        return tags;
    }

    public void Dispose() => _fd.Dispose();
}
