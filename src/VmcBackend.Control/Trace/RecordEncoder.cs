using System.Buffers.Binary;
using System.Text;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;

namespace VmcBackend.Control.Trace;

/// <summary>What a VM_START record says about a VM: enough to build the same engine again.</summary>
public readonly record struct VmInfo(
    string Name, uint Pid, int MaxMtu, int PoolSize, int MaxHmcs, uint DrcIndex, int OutputBacklog, long TimestampFrequency);

/// <summary>
/// Encodes trace records of one VM into its own buffer, one at a time: each method returns the
/// whole record (header and payload), valid until the next call. No allocation. Used by the
/// recorder in vmcd and by the replayer (which encodes what the replayed engine does the same way
/// and compares the bytes).
/// </summary>
public sealed class RecordEncoder(ushort vm)
{
    /// <summary>Longest text kept in a FAILED or DETACH record.</summary>
    public const int MaxText = 4096;
    private const int MaxPayload = 24 + 16 * VmcBackend.Engine.VmcEngine.MaxRdmaSegments + 16384 + 64;
    private readonly byte[] _buffer = new byte[TraceFormat.RecordHeaderSize + MaxPayload];

    public ushort Vm => vm;

    /// <summary>Stamps each record (default: the monotonic clock).</summary>
    public Func<long> Clock { get; set; } = TraceFormat.NowNs;

    private Span<byte> Begin(RecordType type, int length, byte flags = 0)
    {
        TraceFormat.WriteRecordHeader(_buffer, type, flags, vm, length, Clock());
        return _buffer.AsSpan(TraceFormat.RecordHeaderSize, length);
    }

    private ReadOnlySpan<byte> Done(int length) => _buffer.AsSpan(0, TraceFormat.RecordHeaderSize + length);

    /// <summary>SUBMIT or POST: one 16-byte CRQ entry.</summary>
    public ReadOnlySpan<byte> Entry(RecordType type, ReadOnlySpan<byte> entry)
    {
        entry[..16].CopyTo(Begin(type, 16));
        return Done(16);
    }

    /// <summary>A record without payload (FREE_CRQ, REQUEST_VMC, RESET, POLL, VM_END).</summary>
    public ReadOnlySpan<byte> Empty(RecordType type)
    {
        Begin(type, 0);
        return Done(0);
    }

    public ReadOnlySpan<byte> RegCrq(uint entries, bool reconnect)
    {
        var p = Begin(RecordType.RegCrq, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(p, entries);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], reconnect ? 1u : 0u);
        return Done(8);
    }

    public ReadOnlySpan<byte> CopyRdma(RdmaDirection direction, ulong length, ulong remoteIoba, ReadOnlySpan<GuestSegment> local)
    {
        int n = Math.Min(local.Length, VmcBackend.Engine.VmcEngine.MaxRdmaSegments);
        var p = Begin(RecordType.CopyRdma, 24 + 16 * n);
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)direction);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], (uint)n);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], length);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], remoteIoba);
        for (int i = 0; i < n; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(p[(24 + 16 * i)..], local[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(p[(32 + 16 * i)..], local[i].Length);
        }
        return Done(24 + 16 * n);
    }

    public ReadOnlySpan<byte> Result(long rc, ulong value)
    {
        var p = Begin(RecordType.Result, 16);
        BinaryPrimitives.WriteInt64LittleEndian(p, rc);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], value);
        return Done(16);
    }

    /// <summary>MEMORY: the data is kept only when the access succeeded.</summary>
    public ReadOnlySpan<byte> Memory(ulong address, bool write, bool ok, ReadOnlySpan<byte> data)
    {
        int kept = ok ? Math.Min(data.Length, 16384) : 0;
        var p = Begin(RecordType.Memory, 16 + kept);
        BinaryPrimitives.WriteUInt64LittleEndian(p, address);
        BinaryPrimitives.WriteUInt32LittleEndian(p[8..], (uint)data.Length);
        p[12] = write ? (byte)1 : (byte)0;
        p[13] = ok ? (byte)1 : (byte)0;
        p[14] = p[15] = 0;
        data[..kept].CopyTo(p[16..]);
        return Done(16 + kept);
    }

    /// <summary>MESSAGE: the first <see cref="TraceFormat.MessageHeadBytes"/> bytes (the router header) and the length.</summary>
    public ReadOnlySpan<byte> Message(int hmcIndex, MessageDirection direction, ReadOnlySpan<byte> message)
    {
        int kept = Math.Min(message.Length, TraceFormat.MessageHeadBytes);
        var p = Begin(RecordType.Message, 8 + kept);
        p[0] = (byte)hmcIndex;
        p[1] = (byte)direction;
        p[2] = p[3] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], (uint)message.Length);
        message[..kept].CopyTo(p[8..]);
        return Done(8 + kept);
    }

    public ReadOnlySpan<byte> Failed(ChannelFailure reason, string text)
    {
        var p = Begin(RecordType.Failed, 4 + MaxText);
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)reason);
        int n = Utf8Prefix(text, p.Slice(4, MaxText));
        Patch(4 + n);
        return Done(4 + n);
    }

    public ReadOnlySpan<byte> Time(long timestamp)
    {
        BinaryPrimitives.WriteInt64LittleEndian(Begin(RecordType.Time, 8), timestamp);
        return Done(8);
    }

    public ReadOnlySpan<byte> VmStart(VmInfo info, VmStartFlags flags)
    {
        var p = Begin(RecordType.VmStart, 32 + 256, (byte)flags);
        BinaryPrimitives.WriteUInt32LittleEndian(p, info.Pid);
        BinaryPrimitives.WriteInt32LittleEndian(p[4..], info.MaxMtu);
        BinaryPrimitives.WriteInt32LittleEndian(p[8..], info.PoolSize);
        BinaryPrimitives.WriteInt32LittleEndian(p[12..], info.MaxHmcs);
        BinaryPrimitives.WriteUInt32LittleEndian(p[16..], info.DrcIndex);
        BinaryPrimitives.WriteInt32LittleEndian(p[20..], info.OutputBacklog);
        BinaryPrimitives.WriteInt64LittleEndian(p[24..], info.TimestampFrequency);
        int n = Utf8Prefix(info.Name, p.Slice(32, 256));
        Patch(32 + n);
        return Done(32 + n);
    }

    public ReadOnlySpan<byte> Attach(int hmcIndex, uint clientPid)
    {
        var p = Begin(RecordType.Attach, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)hmcIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], clientPid);
        return Done(8);
    }

    public ReadOnlySpan<byte> Detach(int hmcIndex, string reason)
    {
        var p = Begin(RecordType.Detach, 4 + 256);
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)hmcIndex);
        int n = Utf8Prefix(reason, p.Slice(4, 256));
        Patch(4 + n);
        return Done(4 + n);
    }

    public ReadOnlySpan<byte> HostSend(int hmcIndex, ReadOnlySpan<byte> message)
    {
        int kept = Math.Min(message.Length, 16384);
        var p = Begin(RecordType.HostSend, 4 + kept);
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)hmcIndex);
        message[..kept].CopyTo(p[4..]);
        return Done(4 + kept);
    }

    public ReadOnlySpan<byte> Lost(long count)
    {
        BinaryPrimitives.WriteInt64LittleEndian(Begin(RecordType.Lost, 8), count);
        return Done(8);
    }

    /// <summary>Fixes the length of the record being written (variable-length text).</summary>
    private void Patch(int length) => BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(4), length);

    /// <summary>The longest UTF-8 prefix of <paramref name="text"/> that fits, cut at a character boundary.</summary>
    private static int Utf8Prefix(string text, Span<byte> destination)
    {
        Encoding.UTF8.GetEncoder().Convert(text, destination, flush: true, out _, out int used, out _);
        return used;
    }
}
