using System.Buffers.Binary;
using System.Threading;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Channel;

/// <summary>One slot request as copied out of shared memory (the front-end cannot change it afterwards).</summary>
public readonly record struct SlotRequest(uint Seq, SlotKind Kind, uint A0, uint A1, ulong Length, ulong RemoteIoba);

/// <summary>
/// The back-end's side of the channel memfd (docs/protocol.md, sections 2 and 3): consumer of the
/// submission ring, producer of the output ring, server of the request slot, and the kick, call
/// and done eventfds. The back-end's own counters live here as private copies and are only ever
/// stored to shared memory, never read back; the front-end's counters are read once per use and
/// checked (a producer more than a ring ahead is a protocol violation, <see cref="Violation"/>).
/// Everything the front-end wrote is copied out before it is checked.
/// </summary>
public sealed unsafe class SharedChannel : IDisposable
{
    private readonly SharedMapping _map;
    private readonly byte* _p;
    private uint _sqCons, _oqProd, _doneSeq;
    private bool _posted;

    private SharedChannel(SharedMapping map, EventFd kick, EventFd call, EventFd done)
    {
        _map = map;
        _p = map.Pointer;
        Kick = kick;
        Call = call;
        Done = done;
        // The front-end zero-filled the channel; the back-end's counters start at 0.
        Store(ChannelLayout.SqCons, 0);
        Store(ChannelLayout.OqProd, 0);
        Store(ChannelLayout.DoneSeq, 0);
    }

    public EventFd Kick { get; }
    public EventFd Call { get; }
    public EventFd Done { get; }

    /// <summary>Set when the front-end broke the ring protocol; the connection must fail (reason 3).</summary>
    public string? Violation { get; private set; }

    /// <summary>Maps and checks a channel; on failure disposes everything it was given and says why.</summary>
    public static SharedChannel? TryCreate(SetChannelRequest request, OwnedFd memfd, EventFd kick, EventFd call, EventFd done, out string? error)
    {
        SharedMapping? map = null;
        error = request.Validate();
        if (error == null)
        {
            map = SharedMapping.TryMapSealed(memfd, 0, request.ChannelSize, out error);
            if (map != null) error = ChannelLayout.CheckHeader(new ReadOnlySpan<byte>(map.Pointer, ChannelLayout.Slot));
        }
        memfd.Dispose();
        if (error == null) return new SharedChannel(map!, kick, call, done);
        map?.Dispose();
        kick.Dispose();
        call.Dispose();
        done.Dispose();
        return null;
    }

    private uint LoadAcquire(int offset) => Volatile.Read(ref *(uint*)(_p + offset));
    private void Store(int offset, uint value) => Volatile.Write(ref *(uint*)(_p + offset), value);

    // ---- submission ring (front-end -> back-end)

    /// <summary>Entries the front-end has published and the back-end not yet consumed, or -1 on a violation.</summary>
    public int SqAvailable()
    {
        uint n = LoadAcquire(ChannelLayout.SqProd) - _sqCons;
        if (n <= ChannelLayout.SqEntries) return (int)n;
        Violation ??= $"submission ring: sq_prod is {n} entries ahead of sq_cons (ring of {ChannelLayout.SqEntries})";
        return -1;
    }

    /// <summary>Copies the next SQ entry into <paramref name="entry"/> (16 bytes) and consumes it locally.</summary>
    public void TakeSqEntry(Span<byte> entry)
    {
        int slot = (int)(_sqCons % ChannelLayout.SqEntries);
        new ReadOnlySpan<byte>(_p + ChannelLayout.Sq + slot * ChannelLayout.EntrySize, ChannelLayout.EntrySize).CopyTo(entry);
        _sqCons++;
    }

    /// <summary>Publishes the consumed SQ position (release).</summary>
    public void PublishSqCons() => Store(ChannelLayout.SqCons, _sqCons);

    // ---- output ring (back-end -> front-end)

    /// <summary>oq_prod: the position the next entry gets.</summary>
    public uint OqPosition => _oqProd;

    /// <summary>Appends one entry and publishes it (release); false when the ring is full or the front-end's counter is hostile.</summary>
    public bool TryPost(ReadOnlySpan<byte> entry)
    {
        if (entry.Length != ChannelLayout.EntrySize || Violation != null) return false;
        uint used = _oqProd - LoadAcquire(ChannelLayout.OqCons);
        if (used > ChannelLayout.OqEntries)
        {
            Violation ??= $"output ring: oq_cons is {unchecked((int)-used)} entries away from oq_prod (ring of {ChannelLayout.OqEntries})";
            return false;
        }
        if (used == ChannelLayout.OqEntries) return false;
        int slot = (int)(_oqProd % ChannelLayout.OqEntries);
        entry.CopyTo(new Span<byte>(_p + ChannelLayout.Oq + slot * ChannelLayout.EntrySize, ChannelLayout.EntrySize));
        _oqProd++;
        Store(ChannelLayout.OqProd, _oqProd);
        _posted = true;
        return true;
    }

    /// <summary>Writes the call eventfd if entries were posted since the last call.</summary>
    public void NotifyPosted()
    {
        if (!_posted) return;
        _posted = false;
        Call.Signal();
    }

    // ---- request slot

    /// <summary>True if the front-end published a request not yet completed (reads req_seq with acquire).</summary>
    public bool HasRequest => LoadAcquire(ChannelLayout.Slot + SlotLayout.ReqSeq) != _doneSeq;

    /// <summary>True if there is anything to do in shared memory (cheap; for spinning).</summary>
    public bool HasWork => LoadAcquire(ChannelLayout.SqProd) != _sqCons || HasRequest;

    /// <summary>
    /// Copies the pending request out of the slot: its fields, and for COPY_RDMA its segments into
    /// <paramref name="segments"/> (checked: at most 254, lengths adding up to <c>length</c>).
    /// False (with <see cref="Violation"/> set) when the request breaks the protocol.
    /// </summary>
    public bool TryReadRequest(Span<GuestSegment> segments, out SlotRequest request, out int segmentCount)
    {
        byte* s = _p + ChannelLayout.Slot;
        uint seq = LoadAcquire(ChannelLayout.Slot + SlotLayout.ReqSeq);
        var span = new ReadOnlySpan<byte>(s, SlotLayout.Segments);
        request = new SlotRequest(seq,
            (SlotKind)BinaryPrimitives.ReadUInt32LittleEndian(span[SlotLayout.Kind..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[SlotLayout.A0..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[SlotLayout.A1..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[SlotLayout.Length..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[SlotLayout.RemoteIoba..]));
        segmentCount = 0;
        switch (request.Kind)
        {
            case SlotKind.RegCrq:
                if ((request.A1 & ~SlotLayout.ReconnectFlag) != 0) return Fail($"REG_CRQ with unknown flags 0x{request.A1:X}");
                return true;
            case SlotKind.FreeCrq:
            case SlotKind.RequestVmc:
                return true;
            case SlotKind.CopyRdma:
            {
                if (request.A0 > 1) return Fail($"COPY_RDMA with direction {request.A0}");
                if (request.A1 > SlotLayout.MaxSegments) return Fail($"COPY_RDMA with {request.A1} segments (at most {SlotLayout.MaxSegments})");
                ulong total = 0;
                var segs = new ReadOnlySpan<byte>(s + SlotLayout.Segments, (int)request.A1 * SlotLayout.SegmentSize);
                for (int i = 0; i < request.A1; i++)
                {
                    var g = new GuestSegment(BinaryPrimitives.ReadUInt64LittleEndian(segs[(i * 16)..]), BinaryPrimitives.ReadUInt64LittleEndian(segs[(i * 16 + 8)..]));
                    segments[i] = g;
                    total += g.Length;
                    if (total < g.Length) return Fail("COPY_RDMA segment lengths overflow");
                }
                if (total != request.Length) return Fail($"COPY_RDMA segments add up to {total} bytes, length is {request.Length}");
                segmentCount = (int)request.A1;
                return true;
            }
            default:
                return Fail($"request slot kind {(uint)request.Kind} is unknown");
        }
    }

    private bool Fail(string why)
    {
        Violation ??= "request slot: " + why;
        return false;
    }

    /// <summary>Completes request <paramref name="seq"/>: done_rc and done_value, then done_seq (release), then the done eventfd.</summary>
    public void Complete(uint seq, long rc, ulong value)
    {
        Volatile.Write(ref *(long*)(_p + ChannelLayout.DoneRc), rc);
        Volatile.Write(ref *(ulong*)(_p + ChannelLayout.DoneValue), value);
        _doneSeq = seq;
        Store(ChannelLayout.DoneSeq, seq);
        Done.Signal();
    }

    public void Dispose()
    {
        _map.Dispose();
        Kick.Dispose();
        Call.Dispose();
        Done.Dispose();
    }
}
