using System.Buffers.Binary;
using System.Net.Sockets;
using Tmds.Linux;
using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// The front-end's end of the vmc-user socket, test-side and independent of vmcd's FrameSocket:
/// raw sends (any bytes, any fds, for malformed-frame tests) and replies read with a deadline.
/// A CHANNEL_FAILED seen while waiting is recorded in <see cref="Failure"/>.
/// </summary>
public sealed unsafe class VmcUserSocket : IDisposable
{
    private readonly Socket _socket;

    public VmcUserSocket(string path)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { _socket.Connect(new UnixDomainSocketEndPoint(path)); }
        catch { _socket.Dispose(); throw; }
    }

    public Socket Socket => _socket;
    public ChannelFailure? Failure { get; private set; }
    public int DeadlineMs { get; set; } = 5000;

    /// <summary>Sends bytes with fds attached to the first byte; false if the peer is gone.</summary>
    public bool SendRaw(ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds = default) => SendOn(_socket, bytes, fds);

    /// <summary>sendmsg on any connected socket, fds attached to the first byte.</summary>
    public static bool SendOn(Socket socket, ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds)
    {
        int fd = (int)socket.Handle;
        int space = fds.Length > 0 ? LibC.CMSG_SPACE(sizeof(int) * fds.Length) : 0;
        byte* control = stackalloc byte[Math.Max(space, 8)];
        fixed (byte* b = bytes)
        {
            int sent = 0;
            do
            {
                var iov = new iovec { iov_base = b + sent, iov_len = (size_t)(bytes.Length - sent) };
                var msg = new msghdr { msg_iov = &iov, msg_iovlen = 1 };
                if (sent == 0 && space > 0)
                {
                    new Span<byte>(control, space).Clear();
                    msg.msg_control = control;
                    msg.msg_controllen = (socklen_t)space;
                    var h = LibC.CMSG_FIRSTHDR(&msg);
                    // Not LibC.CMSG_LEN: Tmds.LibC 0.5.0 rounds it up like CMSG_SPACE (24 for one fd), which would
                    // send a second, garbage fd number. CMSG_LEN(n) is the header plus n bytes.
                    h->cmsg_len = (socklen_t)(LibC.CMSG_LEN(0) + sizeof(int) * fds.Length);
                    h->cmsg_level = LibC.SOL_SOCKET;
                    h->cmsg_type = LibC.SCM_RIGHTS;
                    fds.CopyTo(new Span<int>(LibC.CMSG_DATA(h), fds.Length));
                }
                long n = LibC.sendmsg(fd, &msg, LibC.MSG_NOSIGNAL);
                if (n < 0) { if (LibC.errno == LibC.EINTR) continue; return false; }
                sent += (int)n;
            } while (sent < bytes.Length);
            return true;
        }
    }

    /// <summary>Sends a request frame (version 2 flags) with fds.</summary>
    public bool Send(uint request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default) => SendRaw(Vu.Request(request, payload), fds);

    /// <summary>
    /// Reads one frame within the deadline. Returns (request, flags, payload), or null when the
    /// socket closed, timed out, or the frame was not well-formed.
    /// </summary>
    public (uint Request, uint Flags, byte[] Payload)? ReadFrame(int? deadlineMs = null)
    {
        long end = Environment.TickCount64 + (deadlineMs ?? DeadlineMs);
        var header = new byte[Vu.HeaderBytes];
        if (!ReadExact(header, end)) return null;
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
        if (size > Vu.MaxPayload) return null;
        var payload = new byte[size];
        if (!ReadExact(payload, end)) return null;
        var f = (BinaryPrimitives.ReadUInt32LittleEndian(header), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)), payload);
        if (f.Item1 == Vu.ChannelFailed) Failure = ChannelFailure.Decode(payload);
        return f;
    }

    /// <summary>Reads the reply to <paramref name="request"/>; null if anything else came (or nothing).</summary>
    public byte[]? ReadReply(uint request)
    {
        var f = ReadFrame();
        if (f is not { } r || r.Request != request || r.Flags != Vu.FlagsReply) return null;
        return r.Payload;
    }

    /// <summary>Sends a request and returns its u64 reply; null if the back-end did not answer properly.</summary>
    public ulong? CallU64(uint request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        if (!Send(request, payload, fds)) return null;
        var p = ReadReply(request);
        return p is { Length: 8 } ? BinaryPrimitives.ReadUInt64LittleEndian(p) : null;
    }

    /// <summary>True when the back-end closed the connection (EOF) within the deadline, draining what it sent first.</summary>
    public bool WaitForClose(int ms, out int bytesBeforeClose)
    {
        bytesBeforeClose = 0;
        long end = Environment.TickCount64 + ms;
        var buf = new byte[4096];
        while (true)
        {
            int left = (int)(end - Environment.TickCount64);
            if (left <= 0 || !_socket.Poll(left * 1000, SelectMode.SelectRead)) return false;
            int n;
            try { n = _socket.Receive(buf); }
            catch (SocketException) { return true; }
            if (n == 0) return true;
            bytesBeforeClose += n;
        }
    }

    private bool ReadExact(byte[] into, long end)
    {
        int got = 0;
        while (got < into.Length)
        {
            int left = (int)(end - Environment.TickCount64);
            if (left <= 0 || !_socket.Poll(left * 1000, SelectMode.SelectRead)) return false;
            int n;
            try { n = _socket.Receive(into, got, into.Length - got, SocketFlags.None); }
            catch (SocketException) { return false; }
            if (n == 0) return false;
            got += n;
        }
        return true;
    }

    public void Dispose() => _socket.Dispose();
}
