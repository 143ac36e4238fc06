using System.Buffers.Binary;
using System.Text;

namespace VmcBackend.ReferenceFrontEnd.Wire;

// The front-end's own encoder and decoder for vmc-user version 2, written from docs/protocol.md
// alone. It deliberately shares no code with vmcd's codec (src/VmcBackend.Transport/Protocol), so a
// mistake in one shows up as a disagreement with the other.

/// <summary>Socket frame codes and constants (docs/protocol.md, section 1).</summary>
public static class Vu
{
    public const uint GetFeatures = 1, SetFeatures = 2, GetConfig = 3, SetMemTable = 4, SetChannel = 5, Reset = 6;
    public const uint ChannelFailed = 32;
    public const uint FlagsRequest = 2, FlagsReply = 2 | 4;
    public const int HeaderBytes = 12, MaxPayload = 4096, MaxFds = 8;
    public const ulong FeatureMemTableUpdates = 1;
    public const int EINVAL = 22;

    public static byte[] Frame(uint request, uint flags, ReadOnlySpan<byte> payload, uint? sizeOverride = null)
    {
        var b = new byte[HeaderBytes + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, request);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), sizeOverride ?? (uint)payload.Length);
        payload.CopyTo(b.AsSpan(HeaderBytes));
        return b;
    }

    public static byte[] Request(uint request, ReadOnlySpan<byte> payload = default) => Frame(request, FlagsRequest, payload);

    public static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }

    /// <summary>SET_MEM_TABLE payload for (gpa, size, mmap_offset) regions.</summary>
    public static byte[] MemTable(params (ulong Gpa, ulong Size, ulong Offset)[] regions)
    {
        var b = new byte[8 + 24 * regions.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)regions.Length);
        for (int i = 0; i < regions.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8 + 24 * i), regions[i].Gpa);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16 + 24 * i), regions[i].Size);
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24 + 24 * i), regions[i].Offset);
        }
        return b;
    }

    /// <summary>SET_CHANNEL payload.</summary>
    public static byte[] Channel(uint channelSize = Ch.Size, uint sq = Ch.SqEntries, uint oq = Ch.OqEntries, uint reserved = 0)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(b, channelSize);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), sq);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), oq);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), reserved);
        return b;
    }
}

/// <summary>GET_CONFIG's reply as the front-end decodes it.</summary>
public readonly record struct BackendConfig(uint DrcIndex, uint MaxMtu, ushort PoolSize, byte MaxHmcs, uint MaxRdmaSegments, ulong RemoteWindowSize)
{
    public static BackendConfig Decode(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(4)),
        BinaryPrimitives.ReadUInt16LittleEndian(b.Slice(8)), b[10], BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(12)),
        BinaryPrimitives.ReadUInt64LittleEndian(b.Slice(16)));
}

/// <summary>A decoded CHANNEL_FAILED.</summary>
public readonly record struct ChannelFailure(uint Reason, string Text)
{
    public static ChannelFailure? Decode(ReadOnlySpan<byte> p)
    {
        if (p.Length < 8) return null;
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(p.Slice(4));
        if (len != p.Length - 8) return null;
        return new ChannelFailure(BinaryPrimitives.ReadUInt32LittleEndian(p), Encoding.UTF8.GetString(p.Slice(8)));
    }
}

/// <summary>Channel memfd layout (docs/protocol.md, sections 2 and 3).</summary>
public static class Ch
{
    public const uint Size = 0x8000, SqEntries = 512, OqEntries = 1024;
    public const uint Magic = 0x52434D56, Version = 2;
    public const int SqProd = 0x40, SqCons = 0x80, OqProd = 0xC0, OqCons = 0x100;
    public const int DoneSeq = 0x140, DoneRc = 0x148, DoneValue = 0x150;
    public const int Slot = 0x1000, Sq = 0x2000, Oq = 0x4000;
    // request slot fields, relative to Slot
    public const int ReqSeq = 0, Kind = 4, A0 = 8, A1 = 12, Length = 16, RemoteIoba = 24, Segments = 32;
    public const uint KindRegCrq = 1, KindFreeCrq = 2, KindCopyRdma = 3, KindRequestVmc = 4;
    public const uint RegReconnect = 1;
    public const int MaxSegments = 254;
}
