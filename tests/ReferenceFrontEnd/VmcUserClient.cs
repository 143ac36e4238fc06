using System.Buffers.Binary;
using System.Net.Sockets;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Protocol;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>What GET_CONFIG told us.</summary>
public readonly record struct BackendConfig(uint DrcIndex, uint MaxMtu, ushort PoolSize, byte MaxHmcs, uint MaxSegments, ulong RemoteWindowSize);

/// <summary>
/// The front-end side of vmc-user, as QEMU's spapr-vmc implements it: negotiation, memory table,
/// call fd, and each hypercall as a request/reply. When the back-end is gone, hypercalls fail the
/// way the device fails them (H_CLOSED for H_SEND_CRQ, H_HARDWARE otherwise) and <see cref="Connected"/> turns false.
/// </summary>
public sealed class VmcUserClient : IHypervisorBackend, IDisposable
{
    private readonly Socket _socket;
    private readonly FrameSocket _frames;
    private readonly byte[] _payload = new byte[VmcUserHeader.MaxPayload];

    public VmcUserClient(string path)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _frames = new FrameSocket((int)_socket.Handle);
    }

    public bool Connected { get; private set; } = true;
    public FrameSocket Frames => _frames;
    /// <summary>The CRQ state memfd's fd (set by the owner before REG_CRQ).</summary>
    public int StateFd { get; set; } = -1;
    /// <summary>The last REG_CRQ, for re-registering after a reconnect.</summary>
    public GuestSegment[] QueueSegments { get; private set; } = [];
    public uint QueueEntries { get; private set; }

    /// <summary>Sends a request and waits for its reply; null payload length (-1) when the back-end is gone.</summary>
    public int Call(VmcUserRequest request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default, bool needReply = true)
    {
        if (!Connected) return -1;
        uint flags = VmcUserHeader.Version | (needReply && request == VmcUserRequest.SetCallFd ? VmcUserHeader.NeedReplyFlag : 0);
        if (!_frames.Write(request, flags, payload, fds)) { Connected = false; return -1; }
        if (request == VmcUserRequest.SetCallFd && !needReply) return 0;
        var err = _frames.Read(out var h);
        _frames.CloseFds();
        if (err != FrameError.None || !h.IsReply || h.Request != request) { Connected = false; return -1; }
        _frames.Payload.AsSpan(0, (int)h.Size).CopyTo(_payload);
        return (int)h.Size;
    }

    private long CallRc(VmcUserRequest request, ReadOnlySpan<byte> payload, long whenGone, ReadOnlySpan<int> fds = default)
    {
        int n = Call(request, payload, fds);
        return n >= 8 ? BinaryPrimitives.ReadInt64LittleEndian(_payload) : whenGone;
    }

    /// <summary>GET_FEATURES, SET_FEATURES(0), GET_CONFIG.</summary>
    public BackendConfig Negotiate()
    {
        if (Call(VmcUserRequest.GetFeatures, default) != 8) throw new IOException("GET_FEATURES failed");
        Span<byte> f = stackalloc byte[8];
        if (CallRc(VmcUserRequest.SetFeatures, f, -1) != 0) throw new IOException("SET_FEATURES refused");
        if (Call(VmcUserRequest.GetConfig, default) != VmcUserLayout.ConfigSize) throw new IOException("GET_CONFIG failed");
        var c = _payload.AsSpan();
        return new BackendConfig(BinaryPrimitives.ReadUInt32LittleEndian(c), BinaryPrimitives.ReadUInt32LittleEndian(c[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(c[8..]), c[10], BinaryPrimitives.ReadUInt32LittleEndian(c[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(c[16..]));
    }

    public long SetMemTable(ulong gpa, ulong size, int memfd)
    {
        Span<byte> p = stackalloc byte[8 + VmcUserLayout.RegionSize];
        p.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(p, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], gpa);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], size);
        return CallRc(VmcUserRequest.SetMemTable, p, -1, [memfd]);
    }

    public long SetCallFd(int eventFd) => CallRc(VmcUserRequest.SetCallFd, default, -1, [eventFd]);

    public long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect)
    {
        QueueSegments = segments.ToArray();
        QueueEntries = entries;
        Span<byte> p = stackalloc byte[VmcUserLayout.CrqHeaderSize + segments.Length * VmcUserLayout.SegmentSize];
        BinaryPrimitives.WriteUInt32LittleEndian(p, entries);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], tail);
        BinaryPrimitives.WriteUInt32LittleEndian(p[8..], reconnect ? VmcUserLayout.CrqFlagReconnect : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(p[12..], (uint)segments.Length);
        WriteSegments(p[VmcUserLayout.CrqHeaderSize..], segments);
        return CallRc(VmcUserRequest.RegCrq, p, (long)HcallReturn.Hardware, [StateFd]);
    }

    public long FreeQueue()
    {
        QueueEntries = 0;
        return CallRc(VmcUserRequest.FreeCrq, default, (long)HcallReturn.Hardware);
    }

    public long SendCrq(ReadOnlySpan<byte> entry) => CallRc(VmcUserRequest.SendCrq, entry, (long)HcallReturn.Closed);

    public long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
    {
        Span<byte> p = stackalloc byte[VmcUserLayout.RdmaHeaderSize + local.Length * VmcUserLayout.SegmentSize];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)direction);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], (uint)local.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], length);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], remoteIoba);
        WriteSegments(p[VmcUserLayout.RdmaHeaderSize..], local);
        return CallRc(VmcUserRequest.CopyRdma, p, (long)HcallReturn.Hardware);
    }

    public long RequestVmc(out uint drcIndex)
    {
        drcIndex = 0;
        if (Call(VmcUserRequest.RequestVmc, default) != 16) return (long)HcallReturn.Hardware;
        drcIndex = (uint)BinaryPrimitives.ReadUInt64LittleEndian(_payload.AsSpan(8));
        return BinaryPrimitives.ReadInt64LittleEndian(_payload);
    }

    public long Reset() => CallRc(VmcUserRequest.Reset, default, -1);

    private static void WriteSegments(Span<byte> p, ReadOnlySpan<GuestSegment> segments)
    {
        for (int i = 0; i < segments.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(p[(i * 16)..], segments[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(p[(i * 16 + 8)..], segments[i].Length);
        }
    }

    public void Dispose()
    {
        Connected = false;
        _socket.Dispose();
    }
}
