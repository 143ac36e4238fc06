using VmcBackend.Wire.Hcall;
using VmcBackend.Engine.Backend;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// A minimal IVmcBackend for testing the transport alone: every submitted entry comes back in the
/// output ring (with the engine's bounded backlog behaviour when the ring is full), H_COPY_RDMA
/// moves bytes between guest memory and a 64 KiB window, REG_CRQ with RECONNECT posts an init.
/// </summary>
internal sealed class StubBackend(IVmcFrontEnd frontEnd) : IVmcBackend
{
    public const uint Drc = 0x8100_0042;
    public const int BacklogLimit = 2048;
    public const ulong WindowSize = 64 << 10;
    private readonly Queue<byte[]> _backlog = new();
    private readonly byte[] _window = new byte[WindowSize];
    private readonly byte[] _entry = new byte[16];

    public uint QueueEntries { get; private set; }

    public VmcBackendConfig Config => new(Drc, 4096, 32, 2, 254, WindowSize);
    public ulong Features => 0;

    public HcallReturn RegisterQueue(uint entries, bool reconnect)
    {
        _backlog.Clear();
        QueueEntries = entries;
        if (reconnect)
        {
            _entry.AsSpan().Clear();
            _entry[0] = 0xC0; _entry[1] = 0x01;
            Post(_entry);
            frontEnd.Notify();
        }
        return HcallReturn.Success;
    }

    public HcallReturn FreeQueue() { _backlog.Clear(); QueueEntries = 0; return HcallReturn.Success; }
    public void Reset() => FreeQueue();

    public void SubmitEntry(ReadOnlySpan<byte> entry)
    {
        Post(entry);
        frontEnd.Notify();
    }

    private void Post(ReadOnlySpan<byte> entry)
    {
        if (_backlog.Count == 0 && frontEnd.TryPostEntry(entry)) return;
        if (_backlog.Count >= BacklogLimit) { frontEnd.Fail(ChannelFailure.OutputBacklogOverflow, "stub backlog overflow"); return; }
        _backlog.Enqueue(entry.ToArray());
    }

    public HcallReturn CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<Engine.Memory.GuestSegment> local)
    {
        if (remoteIoba > WindowSize || length > WindowSize - remoteIoba) return HcallReturn.RemoteParm;
        ulong at = remoteIoba;
        foreach (var s in local)
        {
            var w = _window.AsSpan((int)at, (int)s.Length);
            bool ok = direction == RdmaDirection.LocalToRemote ? frontEnd.Memory.TryRead(s.Address, w) : frontEnd.Memory.TryWrite(s.Address, w);
            if (!ok) return direction == RdmaDirection.LocalToRemote ? HcallReturn.SourceParm : HcallReturn.DestParm;
            at += s.Length;
        }
        return HcallReturn.Success;
    }

    public HcallReturn RequestVmc(out uint drcIndex) { drcIndex = Drc; return HcallReturn.Success; }

    public bool HasPendingOutput => _backlog.Count > 0;

    public void Poll()
    {
        bool any = false;
        while (_backlog.Count > 0 && frontEnd.TryPostEntry(_backlog.Peek())) { _backlog.Dequeue(); any = true; }
        if (any) frontEnd.Notify();
    }
}
