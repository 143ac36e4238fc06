using System.Buffers.Binary;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing.FrontEnd;

/// <summary>
/// The front-end in process: what QEMU's spapr-vmc device does with vmc-user version 2
/// (docs/protocol.md), with the back-end called directly through the <see cref="IVmcBackend"/>
/// seam instead of over the socket and rings. It checks and translates the partition's hypercalls
/// (LIOBNs, the device's TCE table page by page with permissions), answers H_SEND_CRQ itself and
/// hands the entry to the back-end, plays the output ring (<see cref="Output"/>) and is the only
/// writer of the guest queue (<see cref="Queue"/>), holds the H_VIO_SIGNAL state, and loses and
/// regains its back-end like section 5 (transport event, REG_CRQ with RECONNECT).
/// <para>It moves output into the guest queue when its event loop runs (<see cref="Run"/>: the
/// call eventfd or its timer) and at the end of H_VIO_SIGNAL(enable), not inside H_SEND_CRQ: an
/// answer reaches the guest after the hcall that caused it returned, as with a real back-end that
/// works asynchronously. <see cref="MoveOutputInHcalls"/> models the other order.</para>
/// Guest DMA memory: <see cref="PartitionDma"/> (scattered pages of guest RAM mapped at IOBAs).
/// </summary>
public sealed class SpaprVmcModel : IPartitionPlatform
{
    public const int MaxSegments = 254;
    private const long HSuccess = 0, HClosed = 2, HHardware = -1, HParameter = -4, HSourceParm = -13, HDestParm = -14, HResource = -16;
    private readonly IGuestMemory _backendMemory;
    private readonly GuestSegment[] _segments = new GuestSegment[MaxSegments];
    private GuestSegment[] _queueSegments = [];
    private readonly PartitionDma _dma;
    private Action? _interrupt;
    private bool _moving;
    private Connection? _connection;

    /// <param name="backendMemory">What the back-end sees as guest memory (default: <paramref name="ram"/>; tests wrap it to watch the back-end).</param>
    public SpaprVmcModel(IGuestMemory ram, ulong ramSize, IGuestMemory? backendMemory = null, ulong dmaFloor = 0)
    {
        _backendMemory = backendMemory ?? ram;
        Tce = new TceTable(256UL << 20);
        Queue = new GuestQueueWriter(ram) { Interrupt = () => _interrupt?.Invoke() };
        _dma = new PartitionDma(Tce, ram, ramSize, dmaFloor);
    }

    public TceTable Tce { get; }
    public GuestQueueWriter Queue { get; }
    public OutputRing Output { get; } = new();
    public IVmcBackend? Backend { get; private set; }
    public uint LocalLiobn => 0x1000_0001;
    public uint RemoteLiobn => 0x1000_0002;
    public long HypercallCount { get; private set; }
    public long Notifies { get; private set; }
    public List<(ChannelFailure Reason, string Text)> Failures { get; } = [];
    /// <summary>Move output into the guest queue at the end of every hypercall (a back-end faster than the guest).</summary>
    public bool MoveOutputInHcalls { get; set; }
    /// <summary>How many more entries the front-end may move into the guest queue (null: no limit);
    /// lets a test stop the guest between two hypervisor entries.</summary>
    public int? OutputBudget { get; set; }
    /// <summary>The guest queue as guest-physical segments (what REG_CRQ translated).</summary>
    public ReadOnlySpan<GuestSegment> QueueSegments => _queueSegments;

    // ------------------------------------------------------------------ back-end connection

    /// <summary>A back-end connects: set-up, then REG_CRQ with RECONNECT if the guest has a queue.
    /// Each connection gets its own <see cref="IVmcFrontEnd"/>, cut off when the connection is lost,
    /// so a back-end instance that outlives its connection can never reach the guest again (the
    /// single-writer fence: a real front-end unmaps that connection's output ring).</summary>
    public IVmcBackend Connect(VmcBackendFactory factory)
    {
        if (_connection != null) _connection.Live = false;
        _connection = new Connection(this);
        Backend = factory(_connection);
        if (Queue.IsRegistered)
        {
            Output.Clear();
            long rc = (long)Backend.RegisterQueue(Queue.Entries, reconnect: true);
            if (rc is not (HSuccess or HClosed)) Disconnect();
        }
        return Backend!;
    }

    /// <summary>The back-end is lost (closed, crashed, CHANNEL_FAILED): its output is discarded and
    /// the guest gets a transport event.</summary>
    public void Disconnect()
    {
        if (_connection != null) _connection.Live = false;
        _connection = null;
        Backend = null;
        Output.Clear();
        Queue.QueueTransportEvent();
    }

    /// <summary>The front-end's event loop (call eventfd, 10 ms timer): lets the back-end retry
    /// pending output, then moves output into the guest queue. Returns the entries moved.</summary>
    public int Run()
    {
        if (Backend is { HasPendingOutput: true } b) b.Poll();
        return MoveOutput();
    }

    private int MoveOutput()
    {
        if (_moving) return 0;
        _moving = true;
        try
        {
            if (!Queue.IsRegistered) { Output.Clear(); return 0; }
            if (OutputBudget is not { } budget) return Queue.Pump(Output);
            var limited = new BudgetedSource(Output, budget);
            int moved = Queue.Pump(limited);
            OutputBudget = budget - moved;
            return moved;
        }
        finally { _moving = false; }
    }

    /// <summary>Machine reset (QEMU's device reset): the queue and interrupt state go, the back-end gets RESET.</summary>
    public void MachineReset()
    {
        Queue.Free();
        Queue.InterruptsEnabled = false;
        _queueSegments = [];
        Output.Clear();
        Backend?.Reset();
    }

    private sealed class BudgetedSource(IOutputSource inner, int budget) : IOutputSource
    {
        private int _left = budget;
        public bool TryPeek(Span<byte> entry) => _left > 0 && inner.TryPeek(entry);
        public void Consume() { _left--; inner.Consume(); }
    }

    // ------------------------------------------------------------------ IVmcFrontEnd

    /// <summary>What one connection's back-end sees; dead once the connection is lost.</summary>
    private sealed class Connection(SpaprVmcModel device) : IVmcFrontEnd
    {
        public bool Live = true;
        public IGuestMemory Memory => device._backendMemory;

        public bool TryPostEntry(ReadOnlySpan<byte> entry)
        {
            if (!Live) { device.FencedEntries++; return true; }    // the ring is gone: the entry goes nowhere
            return device.Output.TryAppend(entry);
        }

        public void Notify() { if (Live) device.Notifies++; }

        public void Fail(ChannelFailure reason, string text)
        {
            if (!Live) return;
            device.Failures.Add((reason, text));
            device.Disconnect();
        }
    }

    /// <summary>Entries a back-end posted after its connection was lost (discarded by the fence).</summary>
    public long FencedEntries { get; private set; }

    // ------------------------------------------------------------------ hypercalls (IPartitionPlatform)

    public void ConnectInterrupt(Action handler) => _interrupt = handler;

    public long VioSignal(bool enable)
    {
        HypercallCount++;
        Queue.InterruptsEnabled = enable;
        if (enable) MoveOutput();
        return HSuccess;
    }

    public long RegCrq(ulong queueIoba, ulong queueBytes)
    {
        HypercallCount++;
        // spapr_vio.c h_reg_crq: one page to 1 MiB, whole pages, page aligned; one queue at a time.
        if (queueBytes < 0x1000 || queueBytes > 0x100000 || (queueBytes & 0xFFF) != 0 || (queueIoba & 0xFFF) != 0) return HParameter;
        if (Queue.IsRegistered) return HResource;
        if (!Tce.TryTranslate(queueIoba, queueBytes, needWrite: true, _segments, out int n)) return HParameter;
        uint entries = (uint)(queueBytes / 16);
        if (!Queue.Register(_segments.AsSpan(0, n), entries)) return HParameter;
        _queueSegments = _segments[..n];
        Output.Clear();
        if (Backend == null) return HSuccess;   // registered; the back-end gets it with RECONNECT when it connects
        long rc = (long)Backend.RegisterQueue(entries, reconnect: false);
        if (rc is not (HSuccess or HClosed)) { Queue.Free(); _queueSegments = []; }
        return rc;
    }

    public long FreeCrq()
    {
        HypercallCount++;
        Queue.Free();
        _queueSegments = [];
        Output.Clear();
        if (Backend != null) Backend.FreeQueue();
        return HSuccess;
    }

    public long SendCrq(ulong word1, ulong word2)
    {
        HypercallCount++;
        if (Backend == null || !Queue.IsRegistered) return HClosed;
        Span<byte> e = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(e, word1);
        BinaryPrimitives.WriteUInt64BigEndian(e[8..], word2);
        if (!(e[0] == 0x80 || (e[0] == 0xC0 && e[1] is 1 or 2))) return HParameter;
        Backend.SubmitEntry(e);
        if (MoveOutputInHcalls) MoveOutput();
        return HSuccess;
    }

    public long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba)
    {
        HypercallCount++;
        if (Backend == null) return HHardware;
        RdmaDirection dir;
        ulong localIoba, remoteIoba;
        if (sourceLiobn == LocalLiobn && destLiobn == RemoteLiobn) { dir = RdmaDirection.LocalToRemote; localIoba = sourceIoba; remoteIoba = destIoba; }
        else if (sourceLiobn == RemoteLiobn && destLiobn == LocalLiobn) { dir = RdmaDirection.RemoteToLocal; localIoba = destIoba; remoteIoba = sourceIoba; }
        else return HParameter;
        bool write = dir == RdmaDirection.RemoteToLocal;
        if (!Tce.TryTranslate(localIoba, length, write, _segments, out int n))
            return length > (ulong)MaxSegments * TceTable.PageSize ? HParameter : write ? HDestParm : HSourceParm;
        long rc = (long)Backend.CopyRdma(dir, remoteIoba, length, _segments.AsSpan(0, n));
        if (MoveOutputInHcalls) MoveOutput();
        return rc;
    }

    public long RequestVmc(out ulong drcIndex)
    {
        HypercallCount++;
        drcIndex = 0;
        if (Backend == null) return HHardware;
        long rc = (long)Backend.RequestVmc(out uint drc);
        drcIndex = drc;
        return rc;
    }

    // ------------------------------------------------------------------ the partition's DMA memory

    public ulong AllocDma(int bytes) => _dma.Alloc(bytes);
    public void ReadDma(ulong ioba, Span<byte> destination) => _dma.Read(ioba, destination);
    public void WriteDma(ulong ioba, ReadOnlySpan<byte> source) => _dma.Write(ioba, source);
    public byte ReadDmaByteAcquire(ulong ioba) => _dma.ReadByteAcquire(ioba);
    public void WriteDmaByte(ulong ioba, byte value) => _dma.WriteByte(ioba, value);
}
