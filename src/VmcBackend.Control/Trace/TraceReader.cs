using System.Buffers.Binary;
using System.Text;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;

namespace VmcBackend.Control.Trace;

/// <summary>A trace that cannot be read: another format version, truncated, or not a trace at all. The message is one line.</summary>
public sealed class TraceFormatException(string message) : Exception(message);

/// <summary>One decoded trace record; <see cref="Payload"/> is its own copy.</summary>
public sealed class TraceRecord(RecordType type, byte flags, ushort vm, long timeNs, byte[] payload, long offset, long index)
{
    public RecordType Type => type;
    public byte Flags => flags;
    public ushort Vm => vm;
    /// <summary>Monotonic nanoseconds, the clock of <see cref="TraceHeader.ClockBaseNs"/>.</summary>
    public long TimeNs => timeNs;
    public byte[] Payload => payload;
    /// <summary>Byte offset of the record in the trace.</summary>
    public long Offset => offset;
    /// <summary>0-based position of the record in the trace.</summary>
    public long Index => index;

    /// <summary>The whole record as it is encoded (header with <paramref name="withTime"/> or time 0, then payload).</summary>
    public byte[] Encode(bool withTime = true)
    {
        var b = new byte[TraceFormat.RecordHeaderSize + payload.Length];
        TraceFormat.WriteRecordHeader(b, type, flags, vm, payload.Length, withTime ? timeNs : 0);
        payload.CopyTo(b, TraceFormat.RecordHeaderSize);
        return b;
    }

    /// <summary>A record from its encoding (header and payload), as <see cref="RecordEncoder"/> makes it.</summary>
    public static TraceRecord Decode(ReadOnlySpan<byte> encoded) => new((RecordType)encoded[0], encoded[1],
        BinaryPrimitives.ReadUInt16LittleEndian(encoded[2..]), BinaryPrimitives.ReadInt64LittleEndian(encoded[8..]),
        encoded[TraceFormat.RecordHeaderSize..].ToArray(), 0, 0);

    // ---- typed views of the payload (the caller checks Type first; a short payload reads as zeros)

    private ReadOnlySpan<byte> P(int at, int length) => at + length <= payload.Length ? payload.AsSpan(at, length) : new byte[length];
    private uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(P(at, 4));
    private long I64(int at) => BinaryPrimitives.ReadInt64LittleEndian(P(at, 8));
    private string Text(int at) => at < payload.Length ? Encoding.UTF8.GetString(payload, at, payload.Length - at) : "";

    /// <summary>SUBMIT, POST.</summary>
    public ReadOnlySpan<byte> Entry => P(0, 16);
    /// <summary>REG_CRQ.</summary>
    public (uint Entries, bool Reconnect) RegCrq => (U32(0), U32(4) != 0);
    /// <summary>COPY_RDMA.</summary>
    public (RdmaDirection Direction, ulong Length, ulong RemoteIoba, GuestSegment[] Segments) CopyRdma
    {
        get
        {
            int n = (int)Math.Min(U32(4), (uint)Math.Max(0, (payload.Length - 24) / 16));
            var segs = new GuestSegment[n];
            for (int i = 0; i < n; i++) segs[i] = new GuestSegment((ulong)I64(24 + 16 * i), (ulong)I64(32 + 16 * i));
            return ((RdmaDirection)U32(0), (ulong)I64(8), (ulong)I64(16), segs);
        }
    }
    /// <summary>RESULT.</summary>
    public (long Rc, ulong Value) Result => (I64(0), (ulong)I64(8));
    /// <summary>MEMORY.</summary>
    public (ulong Address, int Length, bool Write, bool Ok, ReadOnlyMemory<byte> Data) Memory
        => ((ulong)I64(0), (int)U32(8), P(12, 1)[0] != 0, P(13, 1)[0] != 0, payload.AsMemory(Math.Min(16, payload.Length)));
    /// <summary>MESSAGE: HMC index, direction, whole length, first bytes.</summary>
    public (int HmcIndex, MessageDirection Direction, int Length, ReadOnlyMemory<byte> Head) Message
        => (P(0, 1)[0], (MessageDirection)P(1, 1)[0], (int)U32(4), payload.AsMemory(Math.Min(8, payload.Length)));
    /// <summary>FAILED.</summary>
    public (ChannelFailure Reason, string Text) Failure => ((ChannelFailure)U32(0), Text(4));
    /// <summary>TIME.</summary>
    public long Timestamp => I64(0);
    /// <summary>VM_START.</summary>
    public VmInfo VmStart => new(Text(32), U32(0), (int)U32(4), (int)U32(8), (int)U32(12), U32(16), (int)U32(20), I64(24));
    /// <summary>ATTACH.</summary>
    public (int HmcIndex, uint ClientPid) Attach => ((int)U32(0), U32(4));
    /// <summary>DETACH.</summary>
    public (int HmcIndex, string Reason) Detach => ((int)U32(0), Text(4));
    /// <summary>HOST_SEND.</summary>
    public (int HmcIndex, ReadOnlyMemory<byte> Message) HostSend => ((int)U32(0), payload.AsMemory(Math.Min(4, payload.Length)));
    /// <summary>LOST.</summary>
    public long LostCount => I64(0);
}

/// <summary>The file header of a trace.</summary>
public readonly record struct TraceHeader(int Version, long ClockBaseNs, long UnixNs)
{
    public DateTimeOffset StartedAt => DateTimeOffset.FromUnixTimeMilliseconds(UnixNs / 1_000_000);
}

/// <summary>
/// Reads a trace (a file, or a live trace channel) record by record. A trace of another version,
/// a stream that is not a trace, a cut record or an impossible length throw
/// <see cref="TraceFormatException"/> with one line that says which and where.
/// </summary>
public sealed class TraceReader
{
    private readonly Stream _stream;
    private readonly byte[] _head = new byte[TraceFormat.RecordHeaderSize];
    private long _offset, _index;

    /// <summary>Reads and checks the file header (blocking until it arrived).</summary>
    public TraceReader(Stream stream, string what = "the trace")
    {
        _stream = stream;
        What = what;
        var h = new byte[TraceFormat.FileHeaderSize];
        int got = Fill(h);
        int magic = Math.Min(got, 8);
        if (got == 0 || !h.AsSpan(0, magic).SequenceEqual(TraceFormat.Magic[..magic]))
            throw new TraceFormatException($"{what} is not a vmcd trace (it does not start with VMCTRACE)");
        if (got < 12) throw new TraceFormatException($"{what} is truncated: {got} of the header's {TraceFormat.FileHeaderSize} bytes");
        int version = BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(8));
        if (version != TraceFormat.Version)
            throw new TraceFormatException($"{what} has trace format version {version}; this vmcctl reads version {TraceFormat.Version} only");
        int size = BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(10));
        if (got < TraceFormat.FileHeaderSize)
            throw new TraceFormatException($"{what} is truncated: {got} of the header's {TraceFormat.FileHeaderSize} bytes");
        if (size != TraceFormat.FileHeaderSize)
            throw new TraceFormatException($"{what} is corrupt: a version {version} header has {TraceFormat.FileHeaderSize} bytes, this one says {size}");
        Header = new TraceHeader(version, BinaryPrimitives.ReadInt64LittleEndian(h.AsSpan(16)), BinaryPrimitives.ReadInt64LittleEndian(h.AsSpan(24)));
        _offset = TraceFormat.FileHeaderSize;
    }

    public TraceHeader Header { get; }
    public string What { get; }
    /// <summary>Records read so far.</summary>
    public long Count => _index;

    /// <summary>The next record; false at the end of the trace (exactly at a record boundary).</summary>
    public bool TryRead(out TraceRecord record)
    {
        record = null!;
        int got = Fill(_head);
        if (got == 0) return false;
        if (got < _head.Length)
            throw new TraceFormatException($"{What} is truncated at byte {_offset + got}: record {_index} has {got} of its 16 header bytes");
        var type = (RecordType)_head[0];
        int length = BinaryPrimitives.ReadInt32LittleEndian(_head.AsSpan(4));
        if (length < 0 || length > TraceFormat.MaxPayload)
            throw new TraceFormatException($"{What} is corrupt at byte {_offset}: record {_index} claims {length} payload bytes");
        var payload = new byte[length];
        int p = Fill(payload);
        if (p < length)
            throw new TraceFormatException($"{What} is truncated at byte {_offset + TraceFormat.RecordHeaderSize + p}: record {_index} ({Name(type)}) has {p} of its {length} payload bytes");
        record = new TraceRecord(type, _head[1], BinaryPrimitives.ReadUInt16LittleEndian(_head.AsSpan(2)),
            BinaryPrimitives.ReadInt64LittleEndian(_head.AsSpan(8)), payload, _offset, _index);
        _offset += TraceFormat.RecordHeaderSize + length;
        _index++;
        return true;
    }

    /// <summary>A trace file for reading; a gzip-compressed one (as committed under tests/traces) is decompressed on the fly.</summary>
    public static Stream OpenFile(string path)
    {
        var f = File.OpenRead(path);
        if (f.ReadByte() == 0x1F && f.ReadByte() == 0x8B)
        {
            f.Position = 0;
            return new BufferedStream(new System.IO.Compression.GZipStream(f, System.IO.Compression.CompressionMode.Decompress), 1 << 16);
        }
        f.Position = 0;
        return new BufferedStream(f, 1 << 16);
    }

    /// <summary>Every record of a trace file (checked to the end).</summary>
    public static (TraceHeader Header, List<TraceRecord> Records) ReadFile(string path)
    {
        using var f = OpenFile(path);
        var r = new TraceReader(f, path);
        var list = new List<TraceRecord>();
        while (r.TryRead(out var rec)) list.Add(rec);
        return (r.Header, list);
    }

    /// <summary>The record type's name in docs/control.md.</summary>
    public static string Name(RecordType t) => t switch
    {
        RecordType.Submit => "SUBMIT",
        RecordType.RegCrq => "REG_CRQ",
        RecordType.FreeCrq => "FREE_CRQ",
        RecordType.CopyRdma => "COPY_RDMA",
        RecordType.RequestVmc => "REQUEST_VMC",
        RecordType.Reset => "RESET",
        RecordType.Poll => "POLL",
        RecordType.Result => "RESULT",
        RecordType.Post => "POST",
        RecordType.Memory => "MEMORY",
        RecordType.Message => "MESSAGE",
        RecordType.Failed => "FAILED",
        RecordType.Time => "TIME",
        RecordType.VmStart => "VM_START",
        RecordType.VmEnd => "VM_END",
        RecordType.Attach => "ATTACH",
        RecordType.Detach => "DETACH",
        RecordType.HostSend => "HOST_SEND",
        RecordType.Lost => "LOST",
        _ => $"type 0x{(byte)t:X2}",
    };

    private int Fill(Span<byte> b)
    {
        int total = 0;
        while (total < b.Length)
        {
            int n = _stream.Read(b[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
