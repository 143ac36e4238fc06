using System.Net.Sockets;
using Tmds.Linux;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Framing;

/// <summary>What <see cref="FrameSocket.TryReadFrame"/> found.</summary>
public enum FrameStatus
{
    /// <summary>A whole frame is ready: <see cref="FrameSocket.Header"/>, payload, fds.</summary>
    Frame,
    /// <summary>No complete frame yet (non-blocking socket drained).</summary>
    WouldBlock,
    /// <summary>The peer closed the connection between two frames.</summary>
    Closed,
    /// <summary>The frame is malformed or the socket failed: <see cref="FrameSocket.Error"/> says why.</summary>
    Malformed,
}

/// <summary>
/// vmc-user frames on a connected unix stream socket, non-blocking: bytes accumulate across calls
/// until a whole frame is there, so a front-end that stops mid-frame never blocks the connection's
/// thread. File descriptors must arrive with the frame's first byte; fds on later bytes, more than
/// <see cref="FrameHeader.MaxFds"/>, or ancillary data the kernel truncated (MSG_CTRUNC) make the
/// frame malformed. Every received fd is wrapped in an <see cref="OwnedFd"/> at once; fds of a
/// frame not taken by <see cref="TakeFd"/> are closed by <see cref="ReleaseFrame"/>, and the fd
/// slots only ever hold fds of the current frame. Preallocated buffers: a frame without fds
/// allocates nothing. The socket stays owned by the caller.
/// </summary>
public sealed unsafe class FrameSocket
{
    private const int ReplyDeadlineMs = 1000;
    private readonly Socket _socket;
    private readonly int _fd;
    private readonly byte[] _in = new byte[FrameHeader.Length + FrameHeader.MaxPayload];
    private readonly byte[] _out = new byte[FrameHeader.Length + FrameHeader.MaxPayload];
    private readonly byte[] _control = new byte[LibC.CMSG_SPACE(sizeof(int) * (FrameHeader.MaxFds + 1))];
    private readonly OwnedFd?[] _fds = new OwnedFd?[FrameHeader.MaxFds];
    private int _have, _fdCount;
    private bool _frameReady;
    private string? _fdError;

    public FrameSocket(Socket socket)
    {
        _socket = socket;
        _socket.Blocking = false;
        _fd = (int)socket.Handle;
    }

    /// <summary>The current frame's header (valid after <see cref="FrameStatus.Frame"/>).</summary>
    public FrameHeader Header { get; private set; }
    public ReadOnlySpan<byte> Payload => _in.AsSpan(FrameHeader.Length, (int)Header.Size);
    public int FdCount => _fdCount;
    /// <summary>Why the last read failed.</summary>
    public string? Error { get; private set; }

    /// <summary>Takes ownership of the current frame's fd <paramref name="i"/>.</summary>
    public OwnedFd TakeFd(int i)
    {
        var fd = _fds[i] ?? throw new InvalidOperationException($"fd {i} of the frame was already taken");
        _fds[i] = null;
        return fd;
    }

    /// <summary>Ends the current frame: closes the fds nobody took and makes room for the next frame.</summary>
    public void ReleaseFrame()
    {
        for (int i = 0; i < _fds.Length; i++)
        {
            _fds[i]?.Dispose();
            _fds[i] = null;
        }
        _fdCount = 0;
        _fdError = null;
        _have = 0;
        _frameReady = false;
        Header = default;
    }

    /// <summary>Reads what the socket holds until one frame is complete or the socket would block.</summary>
    public FrameStatus TryReadFrame()
    {
        if (_frameReady) ReleaseFrame();   // the caller did not release the previous frame
        while (true)
        {
            int want = _have < FrameHeader.Length ? FrameHeader.Length : FrameHeader.Length + (int)FrameHeader.Read(_in).Size;
            if (_have == want)
            {
                Header = FrameHeader.Read(_in);
                if (_fdError != null) return Malformed(_fdError);
                _frameReady = true;
                return FrameStatus.Frame;
            }
            long n = Receive(_have, want - _have, out bool truncated, out int newFds);
            if (n < 0)
            {
                int e = Errno.Last;
                if (e == LibC.EAGAIN) return FrameStatus.WouldBlock;
                return Malformed(e == LibC.ECONNRESET ? "connection reset by the front-end" : $"socket error: {Errno.Describe(e)}");
            }
            if (newFds > 0 && _have > 0) _fdError ??= "file descriptors arrived on payload bytes (they must come with the header)";
            if (truncated) _fdError ??= "file descriptors truncated (MSG_CTRUNC): too many, or vmcd is out of descriptors";
            if (n == 0)
            {
                if (_have == 0 && _fdCount == 0) return FrameStatus.Closed;
                return Malformed($"truncated frame: the front-end closed the connection after {_have} bytes of it");
            }
            _have += (int)n;
            if (_have == FrameHeader.Length)
            {
                uint size = FrameHeader.Read(_in).Size;
                if (size > FrameHeader.MaxPayload) return Malformed($"frame payload of {size} bytes, at most {FrameHeader.MaxPayload} allowed");
            }
        }
    }

    private FrameStatus Malformed(string why)
    {
        Error = why;
        ReleaseFrame();
        return FrameStatus.Malformed;
    }

    private long Receive(int at, int count, out bool truncated, out int newFds)
    {
        truncated = false;
        newFds = 0;
        fixed (byte* b = &_in[at])
        fixed (byte* c = _control)
        {
            var iov = new iovec { iov_base = b, iov_len = (size_t)count };
            var msg = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = c, msg_controllen = (socklen_t)_control.Length };
            long n;
            do n = LibC.recvmsg(_fd, &msg, LibC.MSG_CMSG_CLOEXEC | LibC.MSG_DONTWAIT);
            while (n < 0 && Errno.Last == LibC.EINTR);
            if (n < 0) return n;
            for (var h = LibC.CMSG_FIRSTHDR(&msg); h != null; h = LibC.CMSG_NXTHDR(&msg, h))
            {
                if (h->cmsg_level != LibC.SOL_SOCKET || h->cmsg_type != LibC.SCM_RIGHTS) continue;
                // CMSG_LEN(0) is the bare header (Tmds.LibC 0.5.0's CMSG_LEN(n) rounds n up, so never use it with n > 0).
                int count2 = ((int)h->cmsg_len - LibC.CMSG_LEN(0)) / sizeof(int);
                int* fds = (int*)LibC.CMSG_DATA(h);
                for (int i = 0; i < count2; i++)
                {
                    var owned = new OwnedFd(fds[i]);
                    newFds++;
                    if (_fdCount < _fds.Length) _fds[_fdCount++] = owned;
                    else
                    {
                        owned.Dispose();
                        _fdError ??= $"more than {FrameHeader.MaxFds} file descriptors in one frame";
                    }
                }
            }
            truncated = (msg.msg_flags & LibC.MSG_CTRUNC) != 0;
            return n;
        }
    }

    /// <summary>
    /// Sends one frame (no fds: the back-end never sends any). A front-end that does not read its
    /// replies for a whole deadline gets an error. Returns null on success, else why it failed.
    /// </summary>
    public string? Write(VmcUserRequest request, uint flags, ReadOnlySpan<byte> payload)
    {
        if (payload.Length > FrameHeader.MaxPayload) return "payload too large";
        new FrameHeader(request, flags, (uint)payload.Length).Write(_out);
        payload.CopyTo(_out.AsSpan(FrameHeader.Length));
        int total = FrameHeader.Length + payload.Length, sent = 0;
        long deadline = Environment.TickCount64 + ReplyDeadlineMs;
        fixed (byte* b = _out)
        {
            while (sent < total)
            {
                long n = LibC.send(_fd, b + sent, (size_t)(total - sent), LibC.MSG_NOSIGNAL | LibC.MSG_DONTWAIT);
                if (n >= 0) { sent += (int)n; continue; }
                int e = Errno.Last;
                if (e == LibC.EINTR) continue;
                if (e != LibC.EAGAIN) return e == LibC.EPIPE || e == LibC.ECONNRESET ? "the front-end closed the connection" : $"send failed: {Errno.Describe(e)}";
                int left = (int)(deadline - Environment.TickCount64);
                if (left <= 0) return $"the front-end has not read its replies for {ReplyDeadlineMs} ms";
                var p = new pollfd { fd = _fd, events = LibC.POLLOUT };
                LibC.poll(&p, 1, left);
            }
        }
        return null;
    }
}
