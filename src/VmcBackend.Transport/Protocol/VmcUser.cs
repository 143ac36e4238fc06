using System.Buffers.Binary;

namespace VmcBackend.Transport.Protocol;

/// <summary>vmc-user request codes (docs/protocol.md).</summary>
public enum VmcUserRequest : uint
{
    GetFeatures = 1,
    SetFeatures = 2,
    GetConfig = 3,
    SetMemTable = 4,
    SetCallFd = 5,
    RegCrq = 6,
    FreeCrq = 7,
    SendCrq = 8,
    CopyRdma = 9,
    RequestVmc = 10,
    Reset = 11,
}

/// <summary>Frame header: u32 request, u32 flags, u32 size, little-endian.</summary>
public readonly record struct VmcUserHeader(VmcUserRequest Request, uint Flags, uint Size)
{
    public const int Length = 12;
    public const uint Version = 1;
    public const uint VersionMask = 0x3, ReplyFlag = 0x4, NeedReplyFlag = 0x8;
    public const int MaxPayload = 4096;
    public const int MaxFds = 8;

    public uint FrameVersion => Flags & VersionMask;
    public bool IsReply => (Flags & ReplyFlag) != 0;
    public bool NeedReply => (Flags & NeedReplyFlag) != 0;
    public bool HasUnknownFlags => (Flags & ~(VersionMask | ReplyFlag | NeedReplyFlag)) != 0;

    public static VmcUserHeader Read(ReadOnlySpan<byte> b) => new(
        (VmcUserRequest)BinaryPrimitives.ReadUInt32LittleEndian(b),
        BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)Request);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Size);
    }
}

/// <summary>Payload layouts and limits.</summary>
public static class VmcUserLayout
{
    public const int ConfigSize = 32;
    public const int MaxRegions = 8;
    public const int RegionSize = 24;          // gpa, size, mmap offset
    public const int SegmentSize = 16;         // gpa, len
    public const int MaxSegments = 254;
    public const int CrqHeaderSize = 16;       // entries, tail, flags, nseg
    public const int RdmaHeaderSize = 24;      // direction, nseg, length, remote ioba
    public const uint CrqFlagReconnect = 1;
    public const ulong SupportedFeatures = 0;

    /// <summary>Writes the GET_CONFIG reply.</summary>
    public static void WriteConfig(Span<byte> b, uint drcIndex, uint maxMtu, ushort pool, byte maxHmcs, ulong remoteWindow)
    {
        b[..ConfigSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, drcIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], maxMtu);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], pool);
        b[10] = maxHmcs;
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], MaxSegments);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], remoteWindow);
    }
}
