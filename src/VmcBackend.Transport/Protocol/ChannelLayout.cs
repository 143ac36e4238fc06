using System.Buffers.Binary;

namespace VmcBackend.Transport.Protocol;

/// <summary>
/// Where everything lives in the channel memfd (docs/protocol.md, section 2). Every offset of the
/// shared rings and the request slot is defined here and nowhere else.
/// </summary>
public static class ChannelLayout
{
    public const int MinSize = 0x8000;
    public const uint Magic = 0x52434D56;  // "VMCR"
    public const uint Version = 2;
    public const int SqEntries = 512, OqEntries = 1024, EntrySize = 16;

    public const int MagicOffset = 0x000, VersionOffset = 0x004, SqEntriesOffset = 0x008, OqEntriesOffset = 0x00C;
    public const int SqProd = 0x040;        // front-end
    public const int SqCons = 0x080;        // back-end
    public const int OqProd = 0x0C0;        // back-end
    public const int OqCons = 0x100;        // front-end
    public const int DoneSeq = 0x140;       // back-end
    public const int DoneRc = 0x148;        // back-end
    public const int DoneValue = 0x150;     // back-end
    public const int Slot = 0x1000;         // front-end, SlotLayout
    public const int Sq = 0x2000;           // SqEntries x 16, front-end
    public const int Oq = 0x4000;           // OqEntries x 16, back-end

    /// <summary>Checks the header the front-end wrote before SET_CHANNEL; null when it is right.</summary>
    public static string? CheckHeader(ReadOnlySpan<byte> channel)
    {
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(channel[MagicOffset..]);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(channel[VersionOffset..]);
        uint sq = BinaryPrimitives.ReadUInt32LittleEndian(channel[SqEntriesOffset..]);
        uint oq = BinaryPrimitives.ReadUInt32LittleEndian(channel[OqEntriesOffset..]);
        if (magic != Magic) return $"channel magic 0x{magic:X8}, expected 0x{Magic:X8}";
        if (version != Version) return $"channel version {version}, expected {Version}";
        if (sq != SqEntries || oq != OqEntries) return $"channel header says {sq}/{oq} ring entries, expected {SqEntries}/{OqEntries}";
        return null;
    }
}

/// <summary>The request slot at <see cref="ChannelLayout.Slot"/> (docs/protocol.md, section 3).</summary>
public static class SlotLayout
{
    public const int ReqSeq = 0x000, Kind = 0x004, A0 = 0x008, A1 = 0x00C, Length = 0x010, RemoteIoba = 0x018, Segments = 0x020;
    public const int SegmentSize = 16;
    public const int MaxSegments = 254;
    public const uint ReconnectFlag = 1;
}

/// <summary>Request slot kinds.</summary>
public enum SlotKind : uint
{
    RegCrq = 1,
    FreeCrq = 2,
    CopyRdma = 3,
    RequestVmc = 4,
}
