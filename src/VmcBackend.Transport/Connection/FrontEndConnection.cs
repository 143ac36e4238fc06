using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using Serilog;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Channel;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Protocol;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Transport.Connection;

/// <summary>
/// One front-end (one VM) speaking vmc-user version 2: its back-end (made by the factory), its
/// guest memory map, its channel. Runs on its own thread (<see cref="Run"/>): an epoll loop on the
/// socket, the kick eventfd and a stop eventfd; on every wake-up it processes the socket frames
/// already received, then the submission ring, then the request slot (docs/protocol.md, "Memory
/// ordering"), and retries the back-end's pending output at least every 10 ms. Anything malformed
/// from the front-end ends this connection with one clear log line; nothing escapes Run.
/// Host-side work (vmcd's control plane) reaches the back-end only through <see cref="Post"/>: it
/// runs on this thread, between two passes.
/// </summary>
public sealed class FrontEndConnection : IVmcFrontEnd, IDisposable
{
    /// <summary>Feature bits the transport itself implements, offered on top of the back-end's own.</summary>
    public const VmcUserFeatures TransportFeatures = VmcUserFeatures.MemTableUpdates;

    private const int EINVAL = 22;
    private const int RetryMs = 10;
    private const uint TagSocket = 0, TagKick = 1, TagStop = 2, TagPost = 3;

    private readonly Socket _socket;
    private readonly FrameSocket _frames;
    private readonly VmcBackendFactory _factory;
    private readonly ILogger _log;
    private readonly GuestMemoryMap _memory = new();
    private readonly EventFd _stop;
    private readonly EventFd _post;
    private readonly ConcurrentQueue<Action<IVmcBackend>> _work = new();
    private readonly Lock _postLock = new();
    private bool _postClosed;
    private readonly IConnectionListener? _listener;
    private readonly Epoll _epoll;
    private readonly byte[] _reply = new byte[FrameHeader.MaxPayload];
    private readonly MemRegion[] _regions = new MemRegion[MemTableRequest.MaxRegions];
    private readonly GuestSegment[] _segments = new GuestSegment[SlotLayout.MaxSegments];
    private readonly long _spinTicks;
    private IVmcBackend? _backend;
    private SharedChannel? _channel;
    private VmcUserFeatures _offered, _features;
    private bool _memTableSet, _again, _notify, _closing;
    private (ChannelFailure Reason, string Text)? _failure;
    private long _items, _busyTicks, _allocatedAtStart;

    /// <param name="spinMicroseconds">How long to poll the rings before sleeping in epoll (0: never).</param>
    /// <param name="peerPid">The front-end's pid (SO_PEERCRED), 0 when unknown.</param>
    /// <param name="listener">Told when the back-end exists and when the connection has ended (vmcd's control plane).</param>
    public FrontEndConnection(Socket socket, VmcBackendFactory factory, ILogger log, string name, int spinMicroseconds = 0,
        uint peerPid = 0, IConnectionListener? listener = null)
    {
        _socket = socket;
        _frames = new FrameSocket(socket);
        _factory = factory;
        _log = log.ForContext("Connection", name);
        _spinTicks = spinMicroseconds * Stopwatch.Frequency / 1_000_000;
        _listener = listener;
        Name = name;
        PeerPid = peerPid;
        _stop = EventFd.Create();
        try
        {
            _post = EventFd.Create();
            _epoll = new Epoll();
        }
        catch
        {
            _stop.Dispose();
            _post?.Dispose();
            throw;
        }
    }

    public string Name { get; }

    /// <summary>The front-end's process id as the kernel recorded it at connect (0 if unknown).</summary>
    public uint PeerPid { get; }

    /// <summary>Wakes the loop and makes it end (from any thread).</summary>
    public void RequestStop() => _stop.Signal();

    /// <summary>
    /// Runs <paramref name="work"/> on this connection's thread with its back-end, between two
    /// passes (from any thread; it never waits for the connection). False once the connection has
    /// ended; work still queued then is dropped (<see cref="IConnectionListener.Ended"/> comes after the last run).
    /// </summary>
    public bool Post(Action<IVmcBackend> work)
    {
        lock (_postLock)
        {
            if (_postClosed) return false;
            _work.Enqueue(work);
            _post.Signal();
            return true;
        }
    }

    // ---- IVmcFrontEnd (called by the back-end on this connection's thread)

    IGuestMemory IVmcFrontEnd.Memory => _memory;

    bool IVmcFrontEnd.TryPostEntry(ReadOnlySpan<byte> entry) => _channel != null && _channel.TryPost(entry);

    // Deferred to the end of the pass: one call eventfd write per batch, however often the back-end asks.
    void IVmcFrontEnd.Notify() => _notify = true;

    void IVmcFrontEnd.Fail(ChannelFailure reason, string text) => _failure ??= (reason, text);

    // ---- the loop

    /// <summary>Serves the connection until the front-end closes it, breaks the protocol, or stop is requested.</summary>
    public void Run()
    {
        // The back-end logs through its own logger: with Enrich.FromLogContext its lines carry the
        // connection's name too (this thread is the connection's only one).
        using var context = Serilog.Context.LogContext.PushProperty("Connection", Name);
        _log.Information("front-end connected");
        _allocatedAtStart = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            _backend = _factory(this);
            _offered = TransportFeatures | (VmcUserFeatures)_backend.Features;
            _epoll.Add((int)_socket.Handle, TagSocket);
            _epoll.Add(_stop.Fd, TagStop);
            _epoll.Add(_post.Fd, TagPost);
            Notify(l => l.Started(this, _backend));
            Loop(_backend);
        }
        catch (Exception e)
        {
            Close($"internal error: {e.GetType().Name}: {e.Message}");
            _log.Debug(e, "connection failure detail");
            SendChannelFailed(ChannelFailure.InternalError, $"vmcd internal error: {e.Message}");
        }
    }

    private void Loop(IVmcBackend backend)
    {
        int timeout = 0;
        while (true)
        {
            uint ready = _epoll.Wait(timeout);
            if ((ready & (1u << (int)TagStop)) != 0) { _log.Information("closing front-end connection: vmcd is stopping"); return; }
            if ((ready & (1u << (int)TagKick)) != 0) _channel!.Kick.Drain();
            if ((ready & (1u << (int)TagPost)) != 0) RunPosted(backend);
            long t0 = Stopwatch.GetTimestamp();
            if (!Service(backend)) return;
            _busyTicks += Stopwatch.GetTimestamp() - t0;
            timeout = _again ? 0 : backend.HasPendingOutput ? RetryMs : -1;
            _again = false;
            if (timeout < 0 && _spinTicks > 0 && Spin()) timeout = 0;
        }
    }

    /// <summary>Runs the host-side work posted so far. A failing item is logged and does not end the connection.</summary>
    private void RunPosted(IVmcBackend backend)
    {
        _post.Drain();
        while (_work.TryDequeue(out var work))
        {
            try { work(backend); }
            catch (Exception e) { _log.Error("a control-plane request failed on this connection: {Error}", e.Message); }
        }
    }

    private void Notify(Action<IConnectionListener> call)
    {
        if (_listener == null) return;
        try { call(_listener); }
        catch (Exception e) { _log.Error("the control plane failed to follow this connection: {Error}", e.Message); }
    }

    /// <summary>Polls the rings for a short while before sleeping; true if work showed up.</summary>
    private bool Spin()
    {
        var ch = _channel;
        if (ch == null) return false;
        long end = Stopwatch.GetTimestamp() + _spinTicks;
        do { if (ch.HasWork) return true; Thread.SpinWait(20); }
        while (Stopwatch.GetTimestamp() < end);
        return false;
    }

    /// <summary>One pass: socket frames, then the SQ, then the slot, then pending output. False: the connection ends.</summary>
    private bool Service(IVmcBackend backend)
    {
        var ch = _channel;
        // Snapshot the rings before reading the socket: a frame sent before a ring item was
        // published is then already in the socket and is handled first.
        int sq = ch?.SqAvailable() ?? 0;
        bool slot = ch?.HasRequest ?? false;
        if (!ReadFrames(backend)) return false;
        // A channel that SET_CHANNEL just brought is served from the next pass (with its own snapshot).
        if (!ReferenceEquals(ch, _channel)) _again = true;
        if (ch != null)
        {
            if (sq < 0) return FailProtocol(ch.Violation!);
            if (sq > 0)
            {
                Span<byte> entry = stackalloc byte[ChannelLayout.EntrySize];
                for (int i = 0; i < sq && _failure == null; i++)
                {
                    ch.TakeSqEntry(entry);
                    backend.SubmitEntry(entry);
                    _items++;
                }
                ch.PublishSqCons();
            }
            if (slot && _failure == null && ch.Violation == null && !ServeSlot(backend, ch)) return FailProtocol(ch.Violation!);
        }
        if (_failure == null && backend.HasPendingOutput) backend.Poll();
        if (_notify)
        {
            _notify = false;
            _channel?.NotifyPosted();
        }
        if (ch?.Violation != null) return FailProtocol(ch.Violation);
        if (_failure is { } f)
        {
            Close($"back-end failed the channel ({f.Reason}): {f.Text}");
            SendChannelFailed(f.Reason, f.Text);
            return false;
        }
        return true;
    }

    private bool ServeSlot(IVmcBackend backend, SharedChannel ch)
    {
        if (!ch.TryReadRequest(_segments, out var r, out int nseg)) return false;
        HcallReturn rc;
        ulong value = 0;
        switch (r.Kind)
        {
            case SlotKind.RegCrq:
                value = ch.OqPosition;
                rc = backend.RegisterQueue(r.A0, (r.A1 & SlotLayout.ReconnectFlag) != 0);
                _log.Information("guest queue registered: {Entries} entries{Reconnect}, {Rc}", r.A0,
                    (r.A1 & SlotLayout.ReconnectFlag) != 0 ? " (reconnect)" : "", rc);
                break;
            case SlotKind.FreeCrq:
                rc = backend.FreeQueue();
                value = ch.OqPosition;
                _log.Information("guest queue freed, {Rc}", rc);
                break;
            case SlotKind.CopyRdma:
                rc = backend.CopyRdma((RdmaDirection)r.A0, r.RemoteIoba, r.Length, _segments.AsSpan(0, nseg));
                break;
            default:
                rc = backend.RequestVmc(out uint drc);
                value = drc;
                break;
        }
        _items++;
        ch.Complete(r.Seq, (long)rc, value);
        return true;
    }

    private bool FailProtocol(string why)
    {
        Close($"protocol violation: {why}");
        SendChannelFailed(ChannelFailure.ProtocolViolation, why);
        return false;
    }

    // ---- socket frames

    private bool ReadFrames(IVmcBackend backend)
    {
        while (true)
        {
            switch (_frames.TryReadFrame())
            {
                case FrameStatus.WouldBlock: return true;
                case FrameStatus.Closed:
                    // The allocation figure is this connection thread's own (setup included): it
                    // does not grow with the number of ring items.
                    _log.Information("front-end disconnected after {Requests} requests, {BusyMs:F1} ms inside vmcd, {AllocatedBytes} bytes allocated",
                        _items, _busyTicks * 1000.0 / Stopwatch.Frequency, GC.GetAllocatedBytesForCurrentThread() - _allocatedAtStart);
                    return false;
                case FrameStatus.Malformed: return Close(_frames.Error!);
            }
            bool ok;
            try { ok = Handle(backend, _frames.Header); }
            finally { _frames.ReleaseFrame(); }
            _items++;
            if (!ok || _failure != null) return ok;
        }
    }

    private bool Handle(IVmcBackend backend, FrameHeader h)
    {
        if (!h.IsValidRequestFlags)
            return Close($"frame flags 0x{h.Flags:X} (request {(uint)h.Request}): vmc-user version {FrameHeader.Version} requests carry flags 0x{FrameHeader.Version:X}");
        if (!FrameHeader.TryGetShape(h.Request, out int size, out int fds))
            return Close($"unknown request {(uint)h.Request}");
        if (size >= 0 && h.Size != size) return Close($"{NameOf(h.Request)}: payload of {h.Size} bytes, expected {size}");
        if (fds >= 0 && _frames.FdCount != fds) return Close($"{NameOf(h.Request)}: {_frames.FdCount} fds, expected {fds}");
        var p = _frames.Payload;
        switch (h.Request)
        {
            case VmcUserRequest.GetFeatures:
                return ReplyU64(h.Request, (ulong)_offered);
            case VmcUserRequest.SetFeatures:
            {
                var f = SetFeaturesRequest.Read(p);
                if (_channel != null) return RefuseAndClose(h.Request, "SET_FEATURES after SET_CHANNEL");
                if ((f & ~_offered) != 0) return RefuseAndClose(h.Request, $"SET_FEATURES asks for 0x{(ulong)(f & ~_offered):X}, which vmcd did not offer (offered 0x{(ulong)_offered:X})");
                _features = f;
                return ReplyU64(h.Request, 0);
            }
            case VmcUserRequest.GetConfig:
                ConfigReply.From(backend.Config).Write(_reply);
                return Reply(h.Request, _reply.AsSpan(0, ConfigReply.Size));
            case VmcUserRequest.SetMemTable:
                return SetMemTable(h, p);
            case VmcUserRequest.SetChannel:
                return SetChannel(h, p);
            default:   // RESET
                backend.Reset();
                _log.Information("device reset");
                return ReplyU64(h.Request, 0);
        }
    }

    private bool SetMemTable(FrameHeader h, ReadOnlySpan<byte> p)
    {
        if (!MemTableRequest.TryRead(p, _regions, out int n, out string? error))
            return Close($"SET_MEM_TABLE: {error}");
        if (_frames.FdCount != n) return Close($"SET_MEM_TABLE: {n} regions but {_frames.FdCount} fds");
        if (_channel != null && (_features & VmcUserFeatures.MemTableUpdates) == 0)
            return RefuseAndClose(h.Request, "SET_MEM_TABLE after SET_CHANNEL without the MEM_TABLE_UPDATES feature");
        var fds = new OwnedFd[n];
        for (int i = 0; i < n; i++) fds[i] = _frames.TakeFd(i);
        if (!_memory.TryReplace(_regions.AsSpan(0, n), fds, out error))
            return RefuseAndClose(h.Request, $"SET_MEM_TABLE: {error}");
        _memTableSet = true;
        _log.Information("guest memory table: {Regions} regions, {MiB} MiB", n, SumMiB(n));
        return ReplyU64(h.Request, 0);
    }

    private ulong SumMiB(int n)
    {
        ulong total = 0;
        for (int i = 0; i < n; i++) total += _regions[i].Size;
        return total >> 20;
    }

    private bool SetChannel(FrameHeader h, ReadOnlySpan<byte> p)
    {
        if (_channel != null) return RefuseAndClose(h.Request, "a second SET_CHANNEL");
        if (!_memTableSet) return RefuseAndClose(h.Request, "SET_CHANNEL before SET_MEM_TABLE");
        var req = SetChannelRequest.Read(p);
        var memfd = _frames.TakeFd(SetChannelRequest.ChannelFd);
        var kick = EventFd.TryAdopt(_frames.TakeFd(SetChannelRequest.KickFd), out string? e1);
        var call = EventFd.TryAdopt(_frames.TakeFd(SetChannelRequest.CallFd), out string? e2);
        var done = EventFd.TryAdopt(_frames.TakeFd(SetChannelRequest.DoneFd), out string? e3);
        if (kick == null || call == null || done == null)
        {
            memfd.Dispose();
            kick?.Dispose(); call?.Dispose(); done?.Dispose();
            string which = kick == null ? $"kick fd: {e1}" : call == null ? $"call fd: {e2}" : $"done fd: {e3}";
            return RefuseAndClose(h.Request, $"SET_CHANNEL: {which}");
        }
        var ch = SharedChannel.TryCreate(req, memfd, kick, call, done, out string? error);
        if (ch == null) return RefuseAndClose(h.Request, $"SET_CHANNEL: {error}");
        _channel = ch;
        _epoll.Add(ch.Kick.Fd, TagKick);
        _log.Information("channel set: {Size} bytes, rings {Sq}/{Oq}", req.ChannelSize, req.SqEntries, req.OqEntries);
        return ReplyU64(h.Request, 0);
    }

    private static string NameOf(VmcUserRequest r) => r switch
    {
        VmcUserRequest.GetFeatures => "GET_FEATURES",
        VmcUserRequest.SetFeatures => "SET_FEATURES",
        VmcUserRequest.GetConfig => "GET_CONFIG",
        VmcUserRequest.SetMemTable => "SET_MEM_TABLE",
        VmcUserRequest.SetChannel => "SET_CHANNEL",
        VmcUserRequest.Reset => "RESET",
        _ => $"request {(uint)r}",
    };

    /// <summary>Status EINVAL, then the connection closes (docs/protocol.md: refused features, unsealed memory, bad channel).</summary>
    private bool RefuseAndClose(VmcUserRequest request, string why)
    {
        ReplyU64(request, EINVAL);
        return Close(why);
    }

    /// <summary>The one error line of a connection that ends badly (later reasons, e.g. a failed reply, go to Debug).</summary>
    private bool Close(string why)
    {
        if (_closing) _log.Debug("also: {Why}", why);
        else _log.Error("closing front-end connection: {Why}", why);
        _closing = true;
        return false;
    }

    private void SendChannelFailed(ChannelFailure reason, string text)
    {
        int n = ChannelFailedMessage.Write(_reply, reason, text);
        _frames.Write(VmcUserRequest.ChannelFailed, FrameHeader.Version, _reply.AsSpan(0, n));
    }

    private bool ReplyU64(VmcUserRequest request, ulong value)
    {
        U64Reply.Write(_reply, value);
        return Reply(request, _reply.AsSpan(0, U64Reply.Size));
    }

    private bool Reply(VmcUserRequest request, ReadOnlySpan<byte> payload)
    {
        string? error = _frames.Write(request, FrameHeader.ReplyFlags, payload);
        return error == null || Close($"replying to {NameOf(request)}: {error}");
    }

    public void Dispose()
    {
        using var context = Serilog.Context.LogContext.PushProperty("Connection", Name);
        try { _backend?.Reset(); }
        catch (Exception e) { _log.Debug(e, "back-end reset at disconnect failed"); }
        lock (_postLock) _postClosed = true;
        if (_backend != null) Notify(l => l.Ended(this));
        _work.Clear();
        (_backend as IDisposable)?.Dispose();
        _channel?.Dispose();
        _memory.Dispose();
        _epoll.Dispose();
        _stop.Dispose();
        _post.Dispose();
    }
}

/// <summary>
/// Follows the life of front-end connections (vmcd's control plane). Both calls come on the
/// connection's own thread, so the listener may touch the back-end in them.
/// </summary>
public interface IConnectionListener
{
    /// <summary>The back-end was made; nothing has been served yet.</summary>
    void Started(FrontEndConnection connection, IVmcBackend backend);

    /// <summary>The connection ended and its back-end was reset for the last time; posted work not run by now never runs.</summary>
    void Ended(FrontEndConnection connection);
}
