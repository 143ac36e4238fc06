using System.Buffers.Binary;
using System.Diagnostics;
using Serilog;
using VmcBackend.Engine;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Notify;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Connection;

/// <summary>Per-connection statistics (read by vmcd's log and the benchmarks).</summary>
public sealed class ConnectionStats
{
    public long Requests, BusyTicks;
}

/// <summary>
/// One front-end (one VM): its own engine, guest memory map, call eventfd and state page. Runs on
/// its own thread: reads a frame, validates it completely, dispatches it to the engine, replies.
/// Any malformed frame ends the connection with one clear error line; nothing escapes.
/// </summary>
public sealed class FrontEndConnection : IDisposable
{
    private const int EINVAL = 22;
    private readonly FrameSocket _frames;
    private readonly GuestMemoryMap _memory = new();
    private readonly FrontEndNotifier _notifier = new();
    private readonly V1GuestQueue _queue;
    private readonly ILogger _log;
    private readonly GuestSegment[] _segments = new GuestSegment[VmcUserLayout.MaxSegments];
    private readonly byte[] _reply = new byte[64];
    private readonly GuestRegion[] _regions = new GuestRegion[VmcUserLayout.MaxRegions];
    private volatile bool _stopping;

    public FrontEndConnection(int socketFd, VmcLimits limits, ILogger log, string name)
    {
        _frames = new FrameSocket(socketFd);
        _log = log.ForContext("Connection", name);
        Name = name;
        _queue = new V1GuestQueue(_memory, _notifier, _log);
        Engine = (VmcEngine)VmcEngine.Factory(limits, _log)(_queue);
    }

    public string Name { get; }
    public VmcEngine Engine { get; }
    public ConnectionStats Stats { get; } = new();
    /// <summary>Why the connection ended (null while running or after an orderly close).</summary>
    public string? Failure { get; private set; }

    public void RequestStop() => _stopping = true;

    /// <summary>Serves the connection until the front-end closes it, a malformed frame arrives, or stop is requested.</summary>
    public unsafe void Run()
    {
        _log.Information("front-end connected");
        try
        {
            while (!_stopping)
            {
                if (Engine.HasPendingOutput)
                {
                    var pfd = new LibC.PollFd { Fd = _frames.Fd, Events = LibC.POLLIN };
                    if (LibC.Poll(&pfd, 1, 1) == 0) { Engine.Poll(); if (_queue.Failure != null) { Fail(_queue.Failure); break; } continue; }
                }
                var err = _frames.Read(out var header);
                if (err == FrameError.Closed)
                {
                    _log.Information("front-end disconnected after {Requests} requests, {BusyMs:F1} ms inside vmcd",
                        Stats.Requests, Stats.BusyTicks * 1000.0 / Stopwatch.Frequency);
                    break;
                }
                if (err != FrameError.None) { Fail(Describe(err)); break; }
                long t0 = Stopwatch.GetTimestamp();
                bool ok = Handle(header);
                _frames.CloseFds();
                Stats.Requests++;
                Stats.BusyTicks += Stopwatch.GetTimestamp() - t0;
                if (!ok) break;
                if (_queue.Failure != null) { Fail(_queue.Failure); break; }
            }
        }
        catch (Exception e)
        {
            Fail($"internal error: {e.Message}");
            _log.Debug(e, "connection failure detail");
        }
        finally
        {
            _frames.CloseFds();
        }
    }

    private static string Describe(FrameError e) => e switch
    {
        FrameError.Truncated => "truncated frame (connection closed mid-frame)",
        FrameError.Oversized => $"frame payload larger than {VmcUserHeader.MaxPayload} bytes",
        FrameError.TooManyFds => $"file descriptors on a payload, truncated, or more than {VmcUserHeader.MaxFds} in one frame",
        _ => $"socket error {LibC.LastError}",
    };

    private bool Fail(string why)
    {
        Failure = why;
        _log.Error("closing front-end connection: {Why}", why);
        return false;
    }

    private bool Handle(in VmcUserHeader h)
    {
        if (h.FrameVersion != VmcUserHeader.Version || h.HasUnknownFlags || h.IsReply)
            return Fail($"frame version {h.FrameVersion} / flags 0x{h.Flags:X} not supported (vmc-user version {VmcUserHeader.Version})");
        var p = _frames.Payload.AsSpan(0, (int)h.Size);
        int fds = _frames.FdCount;
        switch (h.Request)
        {
            case VmcUserRequest.GetFeatures:
                if (!Expect(h, 0, 0)) return false;
                return ReplyU64(h.Request, VmcUserLayout.SupportedFeatures);
            case VmcUserRequest.SetFeatures:
            {
                if (!Expect(h, 8, 0)) return false;
                ulong f = BinaryPrimitives.ReadUInt64LittleEndian(p);
                if ((f & ~VmcUserLayout.SupportedFeatures) != 0)
                {
                    ReplyU64(h.Request, EINVAL);
                    return Fail($"front-end asked for unknown features 0x{f & ~VmcUserLayout.SupportedFeatures:X}");
                }
                return ReplyU64(h.Request, 0);
            }
            case VmcUserRequest.GetConfig:
                if (!Expect(h, 0, 0)) return false;
                var l = Engine.Limits;
                VmcUserLayout.WriteConfig(_reply, l.DrcIndex, (uint)l.MaxMtu, (ushort)l.PoolSize, (byte)l.MaxHmcs, Engine.Config.RemoteWindowSize);
                return Reply(h.Request, _reply.AsSpan(0, VmcUserLayout.ConfigSize));
            case VmcUserRequest.SetMemTable: return SetMemTable(h, p, fds);
            case VmcUserRequest.SetCallFd:
            {
                if (!Expect(h, 0, 1)) return false;
                int fd = _frames.Fds[0];
                if (!IsEventFd(fd)) return Fail("SET_CALL_FD: the fd is not an eventfd");
                _notifier.SetCallFd(_frames.TakeFd(0));
                return !h.NeedReply || ReplyU64(h.Request, 0);
            }
            case VmcUserRequest.RegCrq: return RegCrq(h, p, fds);
            case VmcUserRequest.FreeCrq:
                if (!Expect(h, 0, 0)) return false;
                _queue.Unregister();
                return ReplyU64(h.Request, (ulong)(long)Engine.FreeQueue());
            case VmcUserRequest.SendCrq:
                if (!Expect(h, 16, 0)) return false;
                return ReplyU64(h.Request, (ulong)(long)_queue.Submit(p, Engine));
            case VmcUserRequest.CopyRdma: return CopyRdma(h, p, fds);
            case VmcUserRequest.RequestVmc:
            {
                if (!Expect(h, 0, 0)) return false;
                long rc = (long)Engine.RequestVmc(out uint drc);
                BinaryPrimitives.WriteInt64LittleEndian(_reply, rc);
                BinaryPrimitives.WriteUInt64LittleEndian(_reply.AsSpan(8), drc);
                return Reply(h.Request, _reply.AsSpan(0, 16));
            }
            case VmcUserRequest.Reset:
                if (!Expect(h, 0, 0)) return false;
                _queue.Unregister();
                Engine.Reset();
                return ReplyU64(h.Request, 0);
            default:
                return Fail($"unknown request {(uint)h.Request}");
        }
    }

    private bool Expect(in VmcUserHeader h, int size, int fds)
    {
        if (h.Size != size) return Fail($"{h.Request}: payload of {h.Size} bytes, expected {size}");
        if (_frames.FdCount != fds) return Fail($"{h.Request}: {_frames.FdCount} fds, expected {fds}");
        return true;
    }

    private bool SetMemTable(in VmcUserHeader h, ReadOnlySpan<byte> p, int fds)
    {
        if (p.Length < 8) return Fail("SET_MEM_TABLE: payload too short");
        uint n = BinaryPrimitives.ReadUInt32LittleEndian(p);
        if (n is 0 or > VmcUserLayout.MaxRegions || p.Length != 8 + n * VmcUserLayout.RegionSize)
            return Fail($"SET_MEM_TABLE: {n} regions in a {p.Length}-byte payload");
        for (int i = 0; i < n; i++)
        {
            var r = p.Slice(8 + i * VmcUserLayout.RegionSize);
            _regions[i] = new GuestRegion(BinaryPrimitives.ReadUInt64LittleEndian(r), BinaryPrimitives.ReadUInt64LittleEndian(r[8..]), BinaryPrimitives.ReadUInt64LittleEndian(r[16..]));
        }
        if (!_memory.TryReplace(_regions.AsSpan(0, (int)n), _frames.Fds, out string? error))
        {
            ReplyU64(h.Request, EINVAL);
            return Fail($"SET_MEM_TABLE: {error}");
        }
        _log.Information("guest memory table: {Regions} regions", n);
        return ReplyU64(h.Request, 0);
    }

    private void ReadSegments(ReadOnlySpan<byte> p, int count)
    {
        for (int i = 0; i < count; i++)
        {
            var s = p.Slice(i * VmcUserLayout.SegmentSize);
            _segments[i] = new GuestSegment(BinaryPrimitives.ReadUInt64LittleEndian(s), BinaryPrimitives.ReadUInt64LittleEndian(s[8..]));
        }
    }

    private unsafe bool RegCrq(in VmcUserHeader h, ReadOnlySpan<byte> p, int fds)
    {
        if (p.Length < VmcUserLayout.CrqHeaderSize) return Fail("REG_CRQ: payload too short");
        uint entries = BinaryPrimitives.ReadUInt32LittleEndian(p), tail = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p[8..]), nseg = BinaryPrimitives.ReadUInt32LittleEndian(p[12..]);
        if (nseg is 0 or > VmcUserLayout.MaxSegments || p.Length != VmcUserLayout.CrqHeaderSize + nseg * VmcUserLayout.SegmentSize)
            return Fail($"REG_CRQ: {nseg} segments in a {p.Length}-byte payload");
        if ((flags & ~VmcUserLayout.CrqFlagReconnect) != 0) return Fail($"REG_CRQ: unknown flags 0x{flags:X}");
        if (fds != 1) return Fail($"REG_CRQ: {fds} fds, expected 1 (the state memfd)");
        ReadSegments(p[VmcUserLayout.CrqHeaderSize..], (int)nseg);
        ulong total = 0;
        for (int i = 0; i < nseg; i++)
        {
            var seg = _segments[i];
            if (seg.Length == 0 || seg.Length % 16 != 0)
                return Fail($"REG_CRQ: queue segment {i} is {seg.Length} bytes, not a non-zero multiple of 16");
            if (!_memory.Contains(seg.Address, seg.Length))
                return Fail($"REG_CRQ: queue segment {i} ({seg.Address:X}+{seg.Length:X}) is outside guest memory");
            total += seg.Length;   // at most 254 segments, each inside guest memory: cannot overflow
        }
        if (total != (ulong)entries * 16)
            return Fail($"REG_CRQ: segments add up to {total} bytes, but {entries} entries need {(ulong)entries * 16}");
        if (tail >= entries) return Fail($"REG_CRQ: tail {tail} is outside a queue of {entries} entries");
        int stateFd = _frames.Fds[0];
        if (!LibC.TryFstat(stateFd, out uint mode, out long size) || (mode & LibC.S_IFMT) != LibC.S_IFREG || size < 8)
            return Fail("REG_CRQ: the state fd is not a memfd of at least 8 bytes");
        if (!SharedMemfd.TryMap(stateFd, 4096, out nint state)) return Fail($"REG_CRQ: cannot map the state memfd (errno {LibC.LastError})");
        _notifier.SetState(_frames.TakeFd(0), state);
        long rc = _queue.Register(_segments.AsSpan(0, (int)nseg), entries, tail)
            ? (long)Engine.RegisterQueue(entries, (flags & VmcUserLayout.CrqFlagReconnect) != 0)
            : (long)Wire.Hcall.HcallReturn.Parameter;
        return ReplyU64(h.Request, (ulong)rc);
    }

    private bool CopyRdma(in VmcUserHeader h, ReadOnlySpan<byte> p, int fds)
    {
        if (fds != 0) return Fail($"COPY_RDMA: {fds} unexpected fds");
        if (p.Length < VmcUserLayout.RdmaHeaderSize) return Fail("COPY_RDMA: payload too short");
        uint dir = BinaryPrimitives.ReadUInt32LittleEndian(p), nseg = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), remote = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
        if (nseg > VmcUserLayout.MaxSegments || p.Length != VmcUserLayout.RdmaHeaderSize + nseg * VmcUserLayout.SegmentSize)
            return Fail($"COPY_RDMA: {nseg} segments in a {p.Length}-byte payload");
        ReadSegments(p[VmcUserLayout.RdmaHeaderSize..], (int)nseg);
        long rc = (long)Engine.CopyRdma((RdmaDirection)dir, remote, length, _segments.AsSpan(0, (int)nseg));
        return ReplyU64(h.Request, (ulong)rc);
    }

    private static bool IsEventFd(int fd)
    {
        try { return new FileInfo($"/proc/self/fd/{fd}").LinkTarget == "anon_inode:[eventfd]"; }
        catch (IOException) { return false; }
    }

    private bool ReplyU64(VmcUserRequest request, ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_reply, value);
        return Reply(request, _reply.AsSpan(0, 8));
    }

    private bool Reply(VmcUserRequest request, ReadOnlySpan<byte> payload)
    {
        if (_frames.Write(request, VmcUserHeader.Version | VmcUserHeader.ReplyFlag, payload)) return true;
        _log.Information("front-end went away while replying");
        return false;
    }

    public void Dispose()
    {
        Engine.Reset();
        _notifier.Dispose();
        _memory.Dispose();
    }
}
