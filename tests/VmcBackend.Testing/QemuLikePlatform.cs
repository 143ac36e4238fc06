using System.Buffers.Binary;
using VmcBackend.Engine;
using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Testing;

/// <summary>The hypervisor half as the QEMU device sees it (a VmcEngine in-process, or vmcd over the socket).</summary>
public interface IHypervisorBackend
{
    long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect);
    long FreeQueue();
    long SendCrq(ReadOnlySpan<byte> entry);
    long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local);
    long RequestVmc(out uint drcIndex);
}

/// <summary>
/// Does what the spapr-vmc QEMU device does with the partition's hypercalls: checks LIOBNs,
/// translates the local side through the device's TCE table page by page (with permissions) into
/// guest-physical segments, and hands the call to the hypervisor back-end. Also gives the
/// partition its DMA memory: pages of guest RAM mapped at IOBAs, deliberately scattered (IOBA
/// pages ascend while guest-physical pages descend) so every translation is exercised.
/// </summary>
public class QemuLikePlatform : IPartitionPlatform
{
    public const int MaxSegments = 254;
    private readonly IGuestMemory _ram;
    private readonly TceTable _tce;
    private readonly GuestSegment[] _segments = new GuestSegment[MaxSegments];
    private ulong _nextIoba = TceTable.PageSize;   // IOBA 0 stays unmapped
    private ulong _nextGpaTop;
    private readonly ulong _gpaFloor;

    public QemuLikePlatform(IGuestMemory ram, ulong ramSize, IHypervisorBackend backend, ulong dmaFloor = 0)
    {
        _ram = ram;
        Backend = backend;
        _tce = new TceTable(256UL << 20);
        _nextGpaTop = ramSize;
        _gpaFloor = dmaFloor;
    }

    public IHypervisorBackend Backend { get; set; }
    public TceTable Tce => _tce;
    public uint LocalLiobn => 0x1000_0001;
    public uint RemoteLiobn => 0x1000_0002;
    public long HypercallCount { get; private set; }

    public ulong AllocDma(int bytes)
    {
        int pages = (bytes + TceTable.PageSize - 1) / TceTable.PageSize;
        ulong ioba = _nextIoba;
        for (int i = 0; i < pages; i++)
        {
            if (_nextGpaTop - TceTable.PageSize < _gpaFloor) throw new InvalidOperationException("simulated guest RAM exhausted");
            _nextGpaTop -= TceTable.PageSize;
            _tce.Map(_nextIoba, _nextGpaTop);
            _nextIoba += TceTable.PageSize;
        }
        return ioba;
    }

    public long RegCrq(ulong queueIoba, ulong queueBytes)
    {
        HypercallCount++;
        if (queueBytes == 0 || queueBytes % 16 != 0) return HcallReturn.Parameter;
        if (!_tce.TryTranslate(queueIoba, queueBytes, needWrite: true, _segments, out int n)) return HcallReturn.Parameter;
        return Backend.RegisterQueue(_segments.AsSpan(0, n), (uint)(queueBytes / 16), 0, reconnect: false);
    }

    public long FreeCrq()
    {
        HypercallCount++;
        return Backend.FreeQueue();
    }

    public long SendCrq(ulong word1, ulong word2)
    {
        HypercallCount++;
        Span<byte> e = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(e, word1);
        BinaryPrimitives.WriteUInt64BigEndian(e[8..], word2);
        return Backend.SendCrq(e);
    }

    public long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba)
    {
        HypercallCount++;
        RdmaDirection dir;
        ulong localIoba, remoteIoba;
        if (sourceLiobn == LocalLiobn && destLiobn == RemoteLiobn) { dir = RdmaDirection.LocalToRemote; localIoba = sourceIoba; remoteIoba = destIoba; }
        else if (sourceLiobn == RemoteLiobn && destLiobn == LocalLiobn) { dir = RdmaDirection.RemoteToLocal; localIoba = destIoba; remoteIoba = sourceIoba; }
        else return HcallReturn.Parameter;
        bool write = dir == RdmaDirection.RemoteToLocal;
        if (!_tce.TryTranslate(localIoba, length, write, _segments, out int n))
            return length > (ulong)MaxSegments * TceTable.PageSize ? HcallReturn.Parameter : write ? HcallReturn.DestParm : HcallReturn.SourceParm;
        return Backend.CopyRdma(dir, remoteIoba, length, _segments.AsSpan(0, n));
    }

    public long RequestVmc(out ulong drcIndex)
    {
        HypercallCount++;
        long rc = Backend.RequestVmc(out uint drc);
        drcIndex = drc;
        return rc;
    }

    public void ReadDma(ulong ioba, Span<byte> destination) => Access(ioba, destination, default, write: false);
    public void WriteDma(ulong ioba, ReadOnlySpan<byte> source) => Access(ioba, default, source, write: true);

    public byte ReadDmaByteAcquire(ulong ioba)
    {
        if (!_tce.TryTranslate(ioba, out ulong gpa) || !_ram.TryReadByteAcquire(gpa, out byte b))
            throw new InvalidOperationException($"partition read of unmapped IOBA {ioba:X}");
        return b;
    }

    public void WriteDmaByte(ulong ioba, byte value)
    {
        if (!_tce.TryTranslate(ioba, out ulong gpa) || !_ram.TryWriteByteRelease(gpa, value))
            throw new InvalidOperationException($"partition write of unmapped IOBA {ioba:X}");
    }

    private void Access(ulong ioba, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length, at = 0;
        while (at < length)
        {
            ulong a = ioba + (ulong)at;
            int n = (int)Math.Min((ulong)(length - at), TceTable.PageSize - a % TceTable.PageSize);
            if (!_tce.TryTranslate(a, out ulong gpa)) throw new InvalidOperationException($"partition access of unmapped IOBA {a:X}");
            bool ok = write ? _ram.TryWrite(gpa, src.Slice(at, n)) : _ram.TryRead(gpa, dst.Slice(at, n));
            if (!ok) throw new InvalidOperationException($"partition access outside guest RAM at {gpa:X}");
            at += n;
        }
    }
}

/// <summary>A VmcEngine used directly as the hypervisor back-end (no socket).</summary>
public sealed class EngineBackend(VmcEngine engine) : IHypervisorBackend
{
    public VmcEngine Engine => engine;
    public long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect) => engine.RegisterQueue(segments, entries, tail, reconnect);
    public long FreeQueue() => engine.FreeQueue();
    public long SendCrq(ReadOnlySpan<byte> entry) => engine.SendCrq(entry);
    public long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local) => engine.CopyRdma(direction, remoteIoba, length, local);
    public long RequestVmc(out uint drcIndex) => engine.RequestVmc(out drcIndex);
}

/// <summary>Counts interrupts and remembers the published tail.</summary>
public sealed class RecordingNotifier : IGuestNotifier
{
    public long Interrupts { get; private set; }
    public uint Tail { get; private set; }
    public long TailMoves { get; private set; }
    public void QueueTailMoved(uint tail) { Tail = tail; TailMoves++; }
    public void RaiseInterrupt() => Interrupts++;
}

/// <summary>An engine, its guest RAM and the QEMU-like platform wired together in one process.</summary>
public sealed class InProcessRig
{
    /// <param name="engineMemory">Optionally wraps the guest RAM the engine sees (instrumentation); the partition always sees it raw.</param>
    public InProcessRig(VmcLimits? limits = null, int ramBytes = 8 << 20, Serilog.ILogger? log = null, Func<ArrayGuestMemory, IGuestMemory>? engineMemory = null)
    {
        Memory = new ArrayGuestMemory(ramBytes);
        Notifier = new RecordingNotifier();
        Engine = new VmcEngine(limits ?? new VmcLimits(), engineMemory?.Invoke(Memory) ?? Memory, Notifier, log);
        Platform = new QemuLikePlatform(Memory, (ulong)ramBytes, new EngineBackend(Engine));
    }

    public ArrayGuestMemory Memory { get; }
    public RecordingNotifier Notifier { get; }
    public VmcEngine Engine { get; }
    public QemuLikePlatform Platform { get; }
}
