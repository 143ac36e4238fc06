using System.Buffers.Binary;
using System.Diagnostics;

namespace VmcBackend.Control.Trace;

/// <summary>
/// The vmcd trace format, version 1 (docs/control.md, "Trace format"): a 32-byte file header,
/// then records, each a 16-byte header and its payload. Little-endian integers; CRQ entries are
/// their 16 raw bytes. The same bytes travel on a trace channel and are stored in a trace file.
/// </summary>
public static class TraceFormat
{
    public const int Version = 1;
    public const int FileHeaderSize = 32;
    public const int RecordHeaderSize = 16;
    /// <summary>Largest payload a reader accepts (an RDMA of 16 KiB with 254 segments is far below).</summary>
    public const int MaxPayload = 1 << 20;
    /// <summary>Bytes of an HMC message a MESSAGE record keeps: the router header.</summary>
    public const int MessageHeadBytes = 32;
    /// <summary>"VMCTRACE"</summary>
    public static ReadOnlySpan<byte> Magic => "VMCTRACE"u8;

    /// <summary>Monotonic nanoseconds (the clock of every record's time and of the file header's base).</summary>
    public static long NowNs() => (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));

    /// <summary>Writes the file header: magic, version, header size, the clock base and the wall-clock time at the start.</summary>
    public static void WriteFileHeader(Span<byte> b, long clockBaseNs, long unixNs)
    {
        b[..FileHeaderSize].Clear();
        Magic.CopyTo(b);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(b[10..], FileHeaderSize);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], clockBaseNs);
        BinaryPrimitives.WriteInt64LittleEndian(b[24..], unixNs);
    }

    /// <summary>Writes a record header for a payload of <paramref name="length"/> bytes.</summary>
    public static void WriteRecordHeader(Span<byte> b, RecordType type, byte flags, ushort vm, int length, long timeNs)
    {
        b[0] = (byte)type;
        b[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], vm);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], length);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], timeNs);
    }

    /// <summary>Records that call into the engine (or into a session's handler) from outside: the replayer performs them.</summary>
    public static bool IsInput(RecordType t) => t is >= RecordType.Submit and <= RecordType.Poll
        or RecordType.Attach or RecordType.Detach or RecordType.HostSend;

    /// <summary>Records the engine produces while it handles an input: the replayer compares them.</summary>
    public static bool IsOutput(RecordType t) => t is >= RecordType.Result and <= RecordType.Time;
}

/// <summary>Record types (docs/control.md lists each payload).</summary>
public enum RecordType : byte
{
    // Guest side, through the seam: inputs.
    Submit = 0x01,
    RegCrq = 0x02,
    FreeCrq = 0x03,
    CopyRdma = 0x04,
    RequestVmc = 0x05,
    Reset = 0x06,
    Poll = 0x07,

    // The engine's answer to the last input.
    Result = 0x10,
    Post = 0x11,
    Memory = 0x12,
    Message = 0x13,
    Failed = 0x14,
    /// <summary>A clock reading the engine made (served back by the replayer).</summary>
    Time = 0x15,

    // VMs and the control plane.
    VmStart = 0x20,
    VmEnd = 0x21,
    Attach = 0x22,
    Detach = 0x23,
    HostSend = 0x24,
    Lost = 0x25,
}

/// <summary>Flags of a VM_START record.</summary>
[Flags]
public enum VmStartFlags : byte
{
    None = 0,
    /// <summary>The VM was already running when this trace began: the trace cannot be replayed from the start.</summary>
    Joined = 1,
}
