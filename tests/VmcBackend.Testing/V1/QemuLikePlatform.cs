using System.Buffers.Binary;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;

namespace VmcBackend.Testing;

// Temporary: the device model of the vmc-user VERSION 1 reference front-end (tests/ReferenceFrontEnd),
// where vmcd itself still writes the guest queue. It goes when the reference front-end speaks
// version 2 and uses FrontEnd/GuestQueueWriter like SpaprVmcModel does.

/// <summary>The hypervisor half as a version-1 front-end forwards hypercalls to it (vmcd over the socket).</summary>
public interface IHypervisorBackend
{
    long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect);
    long FreeQueue();
    long SendCrq(ReadOnlySpan<byte> entry);
    long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local);
    long RequestVmc(out uint drcIndex);
}

/// <summary>
/// Version-1 device model: checks LIOBNs, translates the local side through the device's TCE
/// table into guest-physical segments and forwards each hypercall to the back-end; the back-end
/// writes the guest queue and signals the call eventfd, which the owner turns into
/// <see cref="DeliverInterrupt"/>.
/// </summary>
public class QemuLikePlatform : IPartitionPlatform
{
    public const int MaxSegments = 254;
    private readonly IGuestMemory _ram;
    private readonly GuestSegment[] _segments = new GuestSegment[MaxSegments];
    private ulong _nextIoba = TceTable.PageSize;
    private ulong _nextGpaTop;
    private Action? _interrupt;
    private bool _enabled;

    public QemuLikePlatform(IGuestMemory ram, ulong ramSize, IHypervisorBackend backend)
    {
        _ram = ram;
        Backend = backend;
        Tce = new TceTable(256UL << 20);
        _nextGpaTop = ramSize;
    }

    public IHypervisorBackend Backend { get; set; }
    public TceTable Tce { get; }
    public uint LocalLiobn => 0x1000_0001;
    public uint RemoteLiobn => 0x1000_0002;

    /// <summary>The back-end signalled the call eventfd: pulse the VIO interrupt if the guest enabled it.</summary>
    public void DeliverInterrupt()
    {
        if (_enabled) _interrupt?.Invoke();
    }

    public void ConnectInterrupt(Action handler) => _interrupt = handler;

    public long VioSignal(bool enable)
    {
        _enabled = enable;
        return 0;
    }

    public ulong AllocDma(int bytes)
    {
        int pages = (bytes + TceTable.PageSize - 1) / TceTable.PageSize;
        ulong ioba = _nextIoba;
        for (int i = 0; i < pages; i++)
        {
            _nextGpaTop -= TceTable.PageSize;
            Tce.Map(_nextIoba, _nextGpaTop);
            _nextIoba += TceTable.PageSize;
        }
        return ioba;
    }

    public long RegCrq(ulong queueIoba, ulong queueBytes)
    {
        if (queueBytes == 0 || queueBytes % 16 != 0) return -4;
        if (!Tce.TryTranslate(queueIoba, queueBytes, needWrite: true, _segments, out int n)) return -4;
        return Backend.RegisterQueue(_segments.AsSpan(0, n), (uint)(queueBytes / 16), 0, reconnect: false);
    }

    public long FreeCrq() => Backend.FreeQueue();

    public long SendCrq(ulong word1, ulong word2)
    {
        Span<byte> e = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(e, word1);
        BinaryPrimitives.WriteUInt64BigEndian(e[8..], word2);
        return Backend.SendCrq(e);
    }

    public long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba)
    {
        RdmaDirection dir;
        ulong localIoba, remoteIoba;
        if (sourceLiobn == LocalLiobn && destLiobn == RemoteLiobn) { dir = RdmaDirection.LocalToRemote; localIoba = sourceIoba; remoteIoba = destIoba; }
        else if (sourceLiobn == RemoteLiobn && destLiobn == LocalLiobn) { dir = RdmaDirection.RemoteToLocal; localIoba = destIoba; remoteIoba = sourceIoba; }
        else return -4;
        bool write = dir == RdmaDirection.RemoteToLocal;
        if (!Tce.TryTranslate(localIoba, length, write, _segments, out int n))
            return length > (ulong)MaxSegments * TceTable.PageSize ? -4 : write ? -14 : -13;
        return Backend.CopyRdma(dir, remoteIoba, length, _segments.AsSpan(0, n));
    }

    public long RequestVmc(out ulong drcIndex)
    {
        long rc = Backend.RequestVmc(out uint drc);
        drcIndex = drc;
        return rc;
    }

    public void ReadDma(ulong ioba, Span<byte> destination) => Access(ioba, destination, default, write: false);
    public void WriteDma(ulong ioba, ReadOnlySpan<byte> source) => Access(ioba, default, source, write: true);

    public byte ReadDmaByteAcquire(ulong ioba)
    {
        if (!Tce.TryTranslate(ioba, out ulong gpa) || !_ram.TryReadByteAcquire(gpa, out byte b))
            throw new InvalidOperationException($"partition read of unmapped IOBA {ioba:X}");
        return b;
    }

    public void WriteDmaByte(ulong ioba, byte value)
    {
        if (!Tce.TryTranslate(ioba, out ulong gpa) || !_ram.TryWriteByteRelease(gpa, value))
            throw new InvalidOperationException($"partition write of unmapped IOBA {ioba:X}");
    }

    private void Access(ulong ioba, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length, at = 0;
        while (at < length)
        {
            ulong a = ioba + (ulong)at;
            int n = (int)Math.Min((ulong)(length - at), TceTable.PageSize - a % TceTable.PageSize);
            if (!Tce.TryTranslate(a, out ulong gpa)) throw new InvalidOperationException($"partition access of unmapped IOBA {a:X}");
            bool ok = write ? _ram.TryWrite(gpa, src.Slice(at, n)) : _ram.TryRead(gpa, dst.Slice(at, n));
            if (!ok) throw new InvalidOperationException($"partition access outside guest RAM at {gpa:X}");
            at += n;
        }
    }
}
