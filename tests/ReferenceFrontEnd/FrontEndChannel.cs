using System.Buffers.Binary;
using System.Threading;
using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// The front-end's side of the channel memfd, as QEMU's device keeps it: producer of the
/// submission ring, consumer of the output ring, client of the request slot (spin, then the done
/// eventfd, never past the deadline), and the kick/call/done eventfds. The back-end's counters are
/// read as hostile: an output ring more than full means the back-end is lost.
/// </summary>
public sealed unsafe class FrontEndChannel : IDisposable
{
    private uint _sqProd, _oqCons, _reqSeq;

    public FrontEndChannel()
    {
        Memory = new Memfd("vmc-channel", Ch.Size);
        Memory.Span.Clear();
        Write32(0, Ch.Magic);
        Write32(4, Ch.Version);
        Write32(8, Ch.SqEntries);
        Write32(12, Ch.OqEntries);
        Kick = Fd.EventFd();
        Call = Fd.EventFd();
        Done = Fd.EventFd();
    }

    public Memfd Memory { get; }
    public Fd Kick { get; }
    public Fd Call { get; }
    public Fd Done { get; }
    /// <summary>The four fds of SET_CHANNEL, in order.</summary>
    public int[] Fds => [Memory.File.Number, Kick.Number, Call.Number, Done.Number];
    /// <summary>Set when the back-end broke the ring protocol.</summary>
    public string? Violation { get; private set; }
    public int SpinMicroseconds { get; set; } = 20;

    private byte* P => Memory.Pointer;
    public void Write32(int offset, uint v) => Volatile.Write(ref *(uint*)(P + offset), v);
    public uint Read32(int offset) => Volatile.Read(ref *(uint*)(P + offset));

    // ---- submission ring

    /// <summary>Appends an entry and kicks; false when the SQ is full (the hcall answers H_BUSY).</summary>
    public bool TrySubmit(ReadOnlySpan<byte> entry, bool kick = true)
    {
        if (_sqProd - Read32(Ch.SqCons) >= Ch.SqEntries) return false;
        entry.CopyTo(new Span<byte>(P + Ch.Sq + (int)(_sqProd % Ch.SqEntries) * 16, 16));
        _sqProd++;
        Write32(Ch.SqProd, _sqProd);
        if (kick) Kick.Signal();
        return true;
    }

    public uint SqPending => _sqProd - Read32(Ch.SqCons);

    /// <summary>The req_seq the next slot request will carry.</summary>
    public uint NextSeq => _reqSeq + 1;

    // ---- output ring

    /// <summary>Takes the next back-end entry, if any.</summary>
    public bool TryTakeOutput(Span<byte> entry)
    {
        uint prod = Read32(Ch.OqProd);
        uint n = prod - _oqCons;
        if (n > Ch.OqEntries) { Violation ??= $"oq_prod {prod} is {n} entries past oq_cons {_oqCons}"; return false; }
        if (n == 0) return false;
        new ReadOnlySpan<byte>(P + Ch.Oq + (int)(_oqCons % Ch.OqEntries) * 16, 16).CopyTo(entry);
        _oqCons++;
        Write32(Ch.OqCons, _oqCons);
        return true;
    }

    /// <summary>Discards output before <paramref name="position"/> (after REG_CRQ / FREE_CRQ), if that moves forward.</summary>
    public void DiscardOutputBefore(uint position)
    {
        if ((int)(position - _oqCons) > 0 && position - _oqCons <= Ch.OqEntries)
        {
            _oqCons = position;
            Write32(Ch.OqCons, _oqCons);
        }
    }

    public uint OqPending => Read32(Ch.OqProd) - _oqCons;

    /// <summary>Takes the next back-end entry, sleeping on the call eventfd up to <paramref name="deadlineMs"/>.</summary>
    public bool WaitOutput(Span<byte> entry, int deadlineMs)
    {
        long end = Environment.TickCount64 + deadlineMs;
        while (!TryTakeOutput(entry))
        {
            int left = (int)(end - Environment.TickCount64);
            if (left <= 0 || Violation != null) return false;
            Call.WaitReadable(left);
            Call.Drain();
        }
        return true;
    }

    // ---- request slot

    /// <summary>
    /// Issues one slot request and waits for its completion: spins briefly, then sleeps on the done
    /// eventfd, at most <paramref name="deadlineMs"/>. Null when the deadline passed (back-end lost).
    /// </summary>
    public (long Rc, ulong Value)? Request(uint kind, uint a0 = 0, uint a1 = 0, ulong length = 0, ulong remoteIoba = 0,
        ReadOnlySpan<(ulong Gpa, ulong Len)> segments = default, int deadlineMs = 1000)
    {
        byte* s = P + Ch.Slot;
        *(uint*)(s + Ch.Kind) = kind;
        *(uint*)(s + Ch.A0) = a0;
        *(uint*)(s + Ch.A1) = a1;
        *(ulong*)(s + Ch.Length) = length;
        *(ulong*)(s + Ch.RemoteIoba) = remoteIoba;
        var seg = new Span<byte>(s + Ch.Segments, Ch.MaxSegments * 16);
        for (int i = 0; i < segments.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(seg.Slice(i * 16), segments[i].Gpa);
            BinaryPrimitives.WriteUInt64LittleEndian(seg.Slice(i * 16 + 8), segments[i].Len);
        }
        return Issue(++_reqSeq, deadlineMs);
    }

    /// <summary>Publishes req_seq = <paramref name="seq"/> over whatever the slot holds and waits (hostile-slot tests use it directly).</summary>
    public (long Rc, ulong Value)? Issue(uint seq, int deadlineMs = 1000)
    {
        _reqSeq = seq;
        Write32(Ch.Slot + Ch.ReqSeq, seq);
        Kick.Signal();
        long start = Environment.TickCount64;
        long spinEnd = System.Diagnostics.Stopwatch.GetTimestamp() + SpinMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        while (Read32(Ch.DoneSeq) != seq)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() < spinEnd) { Thread.SpinWait(10); continue; }
            int left = (int)(start + deadlineMs - Environment.TickCount64);
            if (left <= 0) return null;
            Done.WaitReadable(left);
            Done.Drain();
        }
        return (Volatile.Read(ref *(long*)(P + Ch.DoneRc)), Volatile.Read(ref *(ulong*)(P + Ch.DoneValue)));
    }

    public void Dispose()
    {
        Memory.Dispose();
        Kick.Dispose();
        Call.Dispose();
        Done.Dispose();
    }
}
