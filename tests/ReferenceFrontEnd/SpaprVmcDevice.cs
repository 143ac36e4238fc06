using System.Buffers.Binary;
using VmcBackend.Engine.Memory;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Testing;
using VmcBackend.Testing.FrontEnd;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// Plays QEMU's spapr-vmc device against a real vmcd over vmc-user version 2, with its own wire
/// code: guest RAM in a sealed memfd, the channel (SQ, OQ, request slot with a deadline), the
/// device's TCE table (hypercall translation), the guest queue written only by the front-end
/// (<see cref="GuestQueueWriter"/>, shared with the in-process model: pacing and the transport
/// event), H_VIO_SIGNAL, and the loss and return of the back-end (docs/protocol.md, sections 4-5).
/// Single-threaded like QEMU's main loop: <see cref="Run"/> is its event loop turn.
/// </summary>
public sealed class SpaprVmcDevice : IPartitionPlatform, IDisposable
{
    public const int MaxSegments = 254;
    private const long HSuccess = 0, HBusy = 1, HClosed = 2, HHardware = -1, HParameter = -4, HSourceParm = -13, HDestParm = -14, HResource = -16;
    private readonly string _socketPath;
    private readonly Memfd _ram;
    private readonly MemfdGuestMemory _memory;
    private readonly GuestSegment[] _segments = new GuestSegment[MaxSegments];
    private readonly (ulong, ulong)[] _slotSegments = new (ulong, ulong)[MaxSegments];
    private readonly OqSource _oq;
    private Action? _interrupt;
    private readonly PartitionDma _dma;

    public SpaprVmcDevice(string socketPath, ulong ramBytes = 16 << 20, int timeoutMs = 1000)
    {
        _socketPath = socketPath;
        TimeoutMs = timeoutMs;
        _ram = new Memfd("vmc-guest-ram", ramBytes);
        _memory = new MemfdGuestMemory(_ram);
        Tce = new TceTable(256UL << 20);
        Queue = new GuestQueueWriter(_memory) { Interrupt = () => _interrupt?.Invoke() };
        _dma = new PartitionDma(Tce, _memory, ramBytes);
        _oq = new OqSource(this);
    }

    public int TimeoutMs { get; }
    public TceTable Tce { get; }
    public GuestQueueWriter Queue { get; }
    public IGuestMemory GuestMemory => _memory;
    public Memfd Ram => _ram;
    /// <summary>The live connection to the back-end, or null while it is lost.</summary>
    public FrontEndLink? Link { get; private set; }
    public BackendConfig Config { get; private set; }
    public uint LocalLiobn => 0x1000_0001;
    public uint RemoteLiobn => 0x1000_0002;
    public int Connections { get; private set; }
    /// <summary>Why the back-end was last lost (CHANNEL_FAILED text, deadline, close).</summary>
    public string? LastLoss { get; private set; }
    public long Losses { get; private set; }

    // ------------------------------------------------------------------ back-end connection

    /// <summary>Connects and sets up (retrying until <paramref name="timeout"/>), then REG_CRQ with RECONNECT if the guest has a queue.</summary>
    public void Connect(TimeSpan timeout)
    {
        var end = DateTime.UtcNow + timeout;
        while (true)
        {
            try { Link = FrontEndLink.Connect(_socketPath, _ram, deadlineMs: TimeoutMs); break; }
            catch (Exception) when (DateTime.UtcNow < end) { Thread.Sleep(20); }
        }
        Config = Link.Config;
        if (Config.RemoteWindowSize > 32UL << 20) { Lose($"the back-end needs a {Config.RemoteWindowSize}-byte window 2; the device has 32 MiB"); throw new IOException(LastLoss); }
        Connections++;
        if (Queue.IsRegistered)
        {
            var r = Slot(Ch.KindRegCrq, Queue.Entries, Ch.RegReconnect);
            if (r is not { } done || done.Rc is not (HSuccess or HClosed)) { Lose("REG_CRQ with RECONNECT refused"); return; }
            Link?.Channel.DiscardOutputBefore((uint)done.Value);
        }
    }

    /// <summary>The back-end is lost: close, discard its output, queue the transport event (section 5).</summary>
    public void Lose(string why)
    {
        if (Link == null) return;
        LastLoss = Link.Socket.Failure is { } f ? $"CHANNEL_FAILED reason {f.Reason}: {f.Text}" : why;
        Losses++;
        Link.Dispose();
        Link = null;
        Queue.QueueTransportEvent();
    }

    /// <summary>
    /// One turn of the device's event loop: notices a closed socket or CHANNEL_FAILED, a stalled
    /// SQ, moves output into the guest queue. Returns the entries moved.
    /// </summary>
    public int Run()
    {
        var link = Link;
        if (link != null)
        {
            if (link.Socket.Socket.Poll(0, System.Net.Sockets.SelectMode.SelectRead))
            {
                link.Socket.ReadFrame(TimeoutMs);   // CHANNEL_FAILED or EOF: either way the back-end is gone
                Lose("the back-end closed the connection");
            }
            else if (link.Channel.Violation != null) Lose(link.Channel.Violation);
            else WaitSqConsumed(link.Channel);
        }
        link = Link;
        if (link != null) link.Channel.Call.Drain();
        return Queue.Pump(_oq);
    }

    /// <summary>
    /// Waits until the back-end consumed the SQ (it publishes sq_cons after the output those entries
    /// caused, so that output is then in the OQ); a back-end whose sq_cons does not move for a
    /// deadline is lost (section 5).
    /// </summary>
    private void WaitSqConsumed(FrontEndChannel ch)
    {
        long since = Environment.TickCount64;
        uint last = ch.Read32(Ch.SqCons);
        for (int spin = 0; ch.SqPending != 0; spin++)
        {
            uint cons = ch.Read32(Ch.SqCons);
            if (cons != last) { last = cons; since = Environment.TickCount64; }
            else if (Environment.TickCount64 - since > TimeoutMs) { Lose($"sq_cons has not moved for {TimeoutMs} ms"); return; }
            if (spin < 200) Thread.SpinWait(20);
            else Thread.Sleep(spin < 400 ? 0 : 1);
        }
    }

    /// <summary>Entries of the OQ, moved by the guest queue writer; without a queue they are discarded.</summary>
    private sealed class OqSource(SpaprVmcDevice d) : IOutputSource
    {
        private readonly byte[] _peeked = new byte[16];
        private bool _have;

        public bool TryPeek(Span<byte> entry)
        {
            if (!_have)
            {
                if (d.Link is not { } l || !l.Channel.TryTakeOutput(_peeked)) return false;
                _have = true;
            }
            _peeked.CopyTo(entry);
            return true;
        }

        public void Consume() => _have = false;
        public void Drop() => _have = false;
    }

    private (long Rc, ulong Value)? Slot(uint kind, uint a0 = 0, uint a1 = 0, ulong length = 0, ulong remote = 0, int nseg = 0)
    {
        if (Link is not { } link) return null;
        var r = link.Channel.Request(kind, a0, a1, length, remote, _slotSegments.AsSpan(0, nseg), TimeoutMs);
        if (r == null) Lose($"request slot kind {kind} missed its {TimeoutMs} ms deadline");
        return r;
    }

    // ------------------------------------------------------------------ hypercalls

    public void ConnectInterrupt(Action handler) => _interrupt = handler;

    public long VioSignal(bool enable)
    {
        Queue.InterruptsEnabled = enable;
        if (enable) Run();
        return HSuccess;
    }

    public long RegCrq(ulong queueIoba, ulong queueBytes)
    {
        if (queueBytes < 0x1000 || queueBytes > 0x100000 || (queueBytes & 0xFFF) != 0 || (queueIoba & 0xFFF) != 0) return HParameter;
        if (Queue.IsRegistered) return HResource;
        if (!Tce.TryTranslate(queueIoba, queueBytes, needWrite: true, _segments, out int n)) return HParameter;
        uint entries = (uint)(queueBytes / 16);
        if (!Queue.Register(_segments.AsSpan(0, n), entries)) return HParameter;
        _oq.Drop();
        if (Link == null) return HSuccess;   // section 4: registered; RECONNECT when a back-end connects
        var r = Slot(Ch.KindRegCrq, entries);
        if (r is not { } done) return HSuccess;   // lost meanwhile: it gets the queue with RECONNECT
        Link?.Channel.DiscardOutputBefore((uint)done.Value);
        if (done.Rc is not (HSuccess or HClosed)) Queue.Free();
        return done.Rc;
    }

    public long FreeCrq()
    {
        Queue.Free();
        _oq.Drop();
        if (Slot(Ch.KindFreeCrq) is { } done) Link?.Channel.DiscardOutputBefore((uint)done.Value);
        return HSuccess;
    }

    public long SendCrq(ulong word1, ulong word2)
    {
        if (Link is not { } link || !Queue.IsRegistered) return HClosed;
        Span<byte> e = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(e, word1);
        BinaryPrimitives.WriteUInt64BigEndian(e[8..], word2);
        if (!(e[0] == 0x80 || (e[0] == 0xC0 && e[1] is 1 or 2))) return HParameter;
        return link.Channel.TrySubmit(e) ? HSuccess : HBusy;
    }

    public long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba)
    {
        if (Link == null) return HHardware;
        uint dir;
        ulong localIoba, remoteIoba;
        if (sourceLiobn == LocalLiobn && destLiobn == RemoteLiobn) { dir = 0; localIoba = sourceIoba; remoteIoba = destIoba; }
        else if (sourceLiobn == RemoteLiobn && destLiobn == LocalLiobn) { dir = 1; localIoba = destIoba; remoteIoba = sourceIoba; }
        else return HParameter;
        if (!Tce.TryTranslate(localIoba, length, dir == 1, _segments, out int n))
            return length > (ulong)MaxSegments * TceTable.PageSize ? HParameter : dir == 1 ? HDestParm : HSourceParm;
        for (int i = 0; i < n; i++) _slotSegments[i] = (_segments[i].Address, _segments[i].Length);
        return Slot(Ch.KindCopyRdma, dir, (uint)n, length, remoteIoba, n)?.Rc ?? HHardware;
    }

    public long RequestVmc(out ulong drcIndex)
    {
        drcIndex = 0;
        if (Slot(Ch.KindRequestVmc) is not { } done) return HHardware;
        drcIndex = (uint)done.Value;
        return done.Rc;
    }

    /// <summary>Machine reset: the queue and interrupt state go; the back-end gets RESET.</summary>
    public void MachineReset()
    {
        Queue.Free();
        Queue.InterruptsEnabled = false;
        _oq.Drop();
        if (Link is { } l && l.Socket.CallU64(Vu.Reset, default) != 0) Lose("RESET was not answered");
    }

    // ------------------------------------------------------------------ the partition's DMA memory

    public ulong AllocDma(int bytes) => _dma.Alloc(bytes);
    public void ReadDma(ulong ioba, Span<byte> destination) => _dma.Read(ioba, destination);
    public void WriteDma(ulong ioba, ReadOnlySpan<byte> source) => _dma.Write(ioba, source);
    public byte ReadDmaByteAcquire(ulong ioba) => _dma.ReadByteAcquire(ioba);
    public void WriteDmaByte(ulong ioba, byte value) => _dma.WriteByte(ioba, value);

    public void Dispose()
    {
        Link?.Dispose();
        Link = null;
        _ram.Dispose();
    }
}
