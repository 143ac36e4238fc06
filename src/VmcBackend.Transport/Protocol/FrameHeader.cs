using System.Buffers.Binary;

namespace VmcBackend.Transport.Protocol;

/// <summary>vmc-user socket request codes (docs/protocol.md, section 1).</summary>
public enum VmcUserRequest : uint
{
    GetFeatures = 1,
    SetFeatures = 2,
    GetConfig = 3,
    SetMemTable = 4,
    SetChannel = 5,
    Reset = 6,
    /// <summary>The back-end's one unsolicited frame.</summary>
    ChannelFailed = 32,
}

/// <summary>vmc-user feature bits (GET_FEATURES / SET_FEATURES).</summary>
[Flags]
public enum VmcUserFeatures : ulong
{
    None = 0,
    /// <summary>SET_MEM_TABLE may be sent again at any time after SET_CHANNEL.</summary>
    MemTableUpdates = 1,
}

/// <summary>The 12-byte frame header: u32 request, u32 flags, u32 size, little-endian.</summary>
public readonly record struct FrameHeader(VmcUserRequest Request, uint Flags, uint Size)
{
    public const int Length = 12;
    public const uint Version = 2;
    public const uint VersionMask = 0x3, ReplyFlag = 0x4;
    public const int MaxPayload = 4096;
    public const int MaxFds = 8;

    /// <summary>Flags of every reply and of CHANNEL_FAILED.</summary>
    public const uint ReplyFlags = Version | ReplyFlag;

    /// <summary>A front-end request's flags: version 2, no reply bit, no other bits.</summary>
    public bool IsValidRequestFlags => Flags == Version;

    public static FrameHeader Read(ReadOnlySpan<byte> b) => new(
        (VmcUserRequest)BinaryPrimitives.ReadUInt32LittleEndian(b),
        BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)Request);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Size);
    }

    /// <summary>
    /// The payload size and fd count a front-end request must carry exactly; -1 where it varies
    /// (SET_MEM_TABLE, see <see cref="MemTableRequest"/>). False for codes that are not requests.
    /// </summary>
    public static bool TryGetShape(VmcUserRequest request, out int payload, out int fds)
    {
        (payload, fds) = request switch
        {
            VmcUserRequest.GetFeatures or VmcUserRequest.GetConfig or VmcUserRequest.Reset => (0, 0),
            VmcUserRequest.SetFeatures => (SetFeaturesRequest.Size, 0),
            VmcUserRequest.SetMemTable => (-1, -1),
            VmcUserRequest.SetChannel => (SetChannelRequest.Size, SetChannelRequest.FdCount),
            _ => (-2, -2),
        };
        return payload != -2;
    }
}
