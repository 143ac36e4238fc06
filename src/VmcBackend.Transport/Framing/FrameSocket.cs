using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Framing;

/// <summary>Why a frame could not be read.</summary>
public enum FrameError { None, Closed, Truncated, Oversized, TooManyFds, IoError }

/// <summary>
/// Reads and writes vmc-user frames with their file descriptors on a connected unix stream socket
/// (blocking, one thread). File descriptors must arrive with the header: fds on payload bytes,
/// truncated ancillary data (MSG_CTRUNC) or more than <see cref="VmcUserHeader.MaxFds"/> make the
/// frame malformed. Received fds are owned by the caller (closed by <see cref="CloseFds"/>).
/// Preallocated buffers: no managed allocation per frame.
/// </summary>
public sealed unsafe class FrameSocket(int fd)
{
    private readonly byte[] _header = new byte[VmcUserHeader.Length];
    private readonly byte[] _control = new byte[LibC.CmsgSpace(sizeof(int) * (VmcUserHeader.MaxFds + 1))];
    private readonly int[] _fds = new int[VmcUserHeader.MaxFds + 1];
    private readonly byte[] _out = new byte[VmcUserHeader.Length + VmcUserHeader.MaxPayload];

    public int Fd => fd;
    /// <summary>Payload of the last frame read.</summary>
    public byte[] Payload { get; } = new byte[VmcUserHeader.MaxPayload];
    public int FdCount { get; private set; }
    public ReadOnlySpan<int> Fds => _fds.AsSpan(0, FdCount);

    /// <summary>Takes ownership of received fd <paramref name="i"/> (it will not be closed by <see cref="CloseFds"/>).</summary>
    public int TakeFd(int i) { int f = _fds[i]; _fds[i] = -1; return f; }

    public void CloseFds()
    {
        for (int i = 0; i < FdCount; i++) if (_fds[i] >= 0) LibC.Close(_fds[i]);
        FdCount = 0;
    }

    /// <summary>Reads one frame. On error, any received fds are already closed.</summary>
    public FrameError Read(out VmcUserHeader header)
    {
        header = default;
        CloseFds();
        var err = ReceiveWithFds(_header, out int got);
        if (err != FrameError.None) { CloseFds(); return err; }
        if (got == 0) { CloseFds(); return FrameError.Closed; }
        if (got < VmcUserHeader.Length)
        {
            var rest = ReadExact(_header.AsSpan(got));
            if (rest != FrameError.None) { CloseFds(); return rest == FrameError.Closed ? FrameError.Truncated : rest; }
        }
        header = VmcUserHeader.Read(_header);
        if (FdCount > VmcUserHeader.MaxFds) { CloseFds(); return FrameError.TooManyFds; }
        if (header.Size > VmcUserHeader.MaxPayload) { CloseFds(); return FrameError.Oversized; }
        var p = ReadExact(Payload.AsSpan(0, (int)header.Size));
        if (p != FrameError.None) { CloseFds(); return p == FrameError.Closed ? FrameError.Truncated : p; }
        return FrameError.None;
    }

    private FrameError ReceiveWithFds(Span<byte> into, out int got)
    {
        got = 0;
        fixed (byte* b = into)
        fixed (byte* c = _control)
        {
            var iov = new LibC.IoVec { Base = b, Length = (nuint)into.Length };
            var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1, Control = c, ControlLen = (nuint)_control.Length };
            nint n;
            do n = LibC.RecvMsg(fd, &msg, LibC.MSG_CMSG_CLOEXEC);
            while (n < 0 && LibC.LastError == LibC.EINTR);
            if (n < 0) return FrameError.IoError;
            CollectFds(&msg);
            got = (int)n;
            if ((msg.Flags & LibC.MSG_CTRUNC) != 0) FdCount = Math.Max(FdCount, VmcUserHeader.MaxFds + 1);
            return FrameError.None;
        }
    }

    private void CollectFds(LibC.MsgHdr* msg)
    {
        byte* c = (byte*)msg->Control;
        nuint off = 0;
        while (off + (nuint)sizeof(LibC.CmsgHdr) <= msg->ControlLen)
        {
            var h = (LibC.CmsgHdr*)(c + off);
            if (h->Len < (nuint)sizeof(LibC.CmsgHdr)) break;
            if (h->Level == LibC.SOL_SOCKET && h->Type == LibC.SCM_RIGHTS)
            {
                int n = (int)((h->Len - (nuint)sizeof(LibC.CmsgHdr)) / sizeof(int));
                int* fds = (int*)(h + 1);
                for (int i = 0; i < n; i++)
                {
                    if (FdCount < _fds.Length) _fds[FdCount++] = fds[i];
                    else LibC.Close(fds[i]);
                }
            }
            off += (h->Len + 7) & ~(nuint)7;
        }
    }

    /// <summary>Reads exactly the span; fds arriving on these bytes make the frame malformed.</summary>
    private FrameError ReadExact(Span<byte> into)
    {
        while (into.Length > 0)
        {
            int before = FdCount;
            var err = ReceiveWithFds(into, out int got);
            if (err != FrameError.None) return err;
            if (FdCount != before) return FrameError.TooManyFds;
            if (got == 0) return FrameError.Closed;
            into = into[got..];
        }
        return FrameError.None;
    }

    /// <summary>Sends one frame (header + payload) with optional fds. False on I/O error.</summary>
    public bool Write(VmcUserRequest request, uint flags, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        if (payload.Length > VmcUserHeader.MaxPayload || fds.Length > VmcUserHeader.MaxFds) return false;
        new VmcUserHeader(request, flags, (uint)payload.Length).Write(_out);
        payload.CopyTo(_out.AsSpan(VmcUserHeader.Length));
        return SendRaw(_out.AsSpan(0, VmcUserHeader.Length + payload.Length), fds);
    }

    /// <summary>Sends raw bytes (tests use it to send malformed frames) with optional fds.</summary>
    public bool SendRaw(ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds = default)
    {
        int controlLen = fds.Length > 0 ? LibC.CmsgSpace(sizeof(int) * fds.Length) : 0;
        byte* control = stackalloc byte[Math.Max(controlLen, 1)];
        fixed (byte* b = bytes)
        {
            int sent = 0;
            while (sent < bytes.Length || (bytes.Length == 0 && sent == 0 && controlLen > 0))
            {
                var iov = new LibC.IoVec { Base = b + sent, Length = (nuint)(bytes.Length - sent) };
                var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                if (sent == 0 && controlLen > 0)
                {
                    new Span<byte>(control, controlLen).Clear();
                    var h = (LibC.CmsgHdr*)control;
                    h->Len = (nuint)(sizeof(LibC.CmsgHdr) + sizeof(int) * fds.Length);
                    h->Level = LibC.SOL_SOCKET;
                    h->Type = LibC.SCM_RIGHTS;
                    fds.CopyTo(new Span<int>(h + 1, fds.Length));
                    msg.Control = control;
                    msg.ControlLen = (nuint)controlLen;
                }
                nint n = LibC.SendMsg(fd, &msg, LibC.MSG_NOSIGNAL);
                if (n < 0) { if (LibC.LastError == LibC.EINTR) continue; return false; }
                sent += (int)n;
                if (bytes.Length == 0) break;
            }
            return true;
        }
    }
}
