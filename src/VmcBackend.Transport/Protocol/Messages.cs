using System.Buffers.Binary;
using System.Text;
using VmcBackend.Engine.Backend;

namespace VmcBackend.Transport.Protocol;

/// <summary>A u64 reply: GET_FEATURES' feature bits, or a status (0 or a positive errno).</summary>
public static class U64Reply
{
    public const int Size = 8;
    public static void Write(Span<byte> b, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(b, value);
    public static ulong Read(ReadOnlySpan<byte> b) => BinaryPrimitives.ReadUInt64LittleEndian(b);
}

/// <summary>SET_FEATURES' payload.</summary>
public static class SetFeaturesRequest
{
    public const int Size = 8;
    public static VmcUserFeatures Read(ReadOnlySpan<byte> b) => (VmcUserFeatures)BinaryPrimitives.ReadUInt64LittleEndian(b);
    public static void Write(Span<byte> b, VmcUserFeatures f) => BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)f);
}

/// <summary>GET_CONFIG's 32-byte reply.</summary>
public readonly record struct ConfigReply(uint DrcIndex, uint MaxMtu, ushort PoolSize, byte MaxHmcs, uint MaxRdmaSegments, ulong RemoteWindowSize)
{
    public const int Size = 32;

    public static ConfigReply From(VmcBackendConfig c) => new(c.DrcIndex, (uint)c.MaxMtu, (ushort)c.PoolSize, (byte)c.MaxHmcs,
        (uint)Math.Clamp(c.MaxRdmaSegments, 0, SlotLayout.MaxSegments), c.RemoteWindowSize);

    public void Write(Span<byte> b)
    {
        b[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, DrcIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], MaxMtu);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], PoolSize);
        b[10] = MaxHmcs;
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], MaxRdmaSegments);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], RemoteWindowSize);
    }

    public static ConfigReply Read(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[8..]), b[10], BinaryPrimitives.ReadUInt32LittleEndian(b[12..]),
        BinaryPrimitives.ReadUInt64LittleEndian(b[16..]));
}

/// <summary>One SET_MEM_TABLE region: guest-physical range backed by [mmap_offset, mmap_offset + size) of its fd.</summary>
public readonly record struct MemRegion(ulong GuestPhysical, ulong Size, ulong MmapOffset)
{
    public const int EncodedSize = 24;
}

/// <summary>SET_MEM_TABLE's payload: u32 nregions (1..8), u32 padding, nregions x region; one fd per region.</summary>
public static class MemTableRequest
{
    public const int HeaderSize = 8;
    public const int MaxRegions = 8;

    /// <summary>Decodes the table into <paramref name="regions"/> (at least <see cref="MaxRegions"/> long).</summary>
    public static bool TryRead(ReadOnlySpan<byte> b, Span<MemRegion> regions, out int count, out string? error)
    {
        count = 0;
        error = null;
        if (b.Length < HeaderSize) { error = $"payload of {b.Length} bytes is shorter than the {HeaderSize}-byte header"; return false; }
        uint n = BinaryPrimitives.ReadUInt32LittleEndian(b);
        if (n is 0 or > MaxRegions) { error = $"{n} regions (1..{MaxRegions} allowed)"; return false; }
        if (b.Length != HeaderSize + n * MemRegion.EncodedSize) { error = $"{n} regions in a {b.Length}-byte payload"; return false; }
        for (int i = 0; i < n; i++)
        {
            var r = b.Slice(HeaderSize + i * MemRegion.EncodedSize);
            regions[i] = new MemRegion(BinaryPrimitives.ReadUInt64LittleEndian(r), BinaryPrimitives.ReadUInt64LittleEndian(r[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(r[16..]));
        }
        count = (int)n;
        return true;
    }

    /// <summary>Encodes a table; returns the payload length.</summary>
    public static int Write(Span<byte> b, ReadOnlySpan<MemRegion> regions)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)regions.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], 0);
        for (int i = 0; i < regions.Length; i++)
        {
            var r = b.Slice(HeaderSize + i * MemRegion.EncodedSize);
            BinaryPrimitives.WriteUInt64LittleEndian(r, regions[i].GuestPhysical);
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], regions[i].Size);
            BinaryPrimitives.WriteUInt64LittleEndian(r[16..], regions[i].MmapOffset);
        }
        return HeaderSize + regions.Length * MemRegion.EncodedSize;
    }
}

/// <summary>SET_CHANNEL's payload; fds in order: channel memfd, kick, call, done eventfds.</summary>
public readonly record struct SetChannelRequest(uint ChannelSize, uint SqEntries, uint OqEntries, uint Reserved)
{
    public const int Size = 16;
    public const int FdCount = 4;
    public const int ChannelFd = 0, KickFd = 1, CallFd = 2, DoneFd = 3;

    public static SetChannelRequest Read(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]), BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, ChannelSize);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], SqEntries);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], OqEntries);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Reserved);
    }

    /// <summary>What version 2 requires of the payload; null when it holds.</summary>
    public string? Validate()
    {
        if (ChannelSize < ChannelLayout.MinSize) return $"channel_size 0x{ChannelSize:X} is below 0x{ChannelLayout.MinSize:X}";
        if (SqEntries != ChannelLayout.SqEntries) return $"sq_entries {SqEntries}, version 2 requires {ChannelLayout.SqEntries}";
        if (OqEntries != ChannelLayout.OqEntries) return $"oq_entries {OqEntries}, version 2 requires {ChannelLayout.OqEntries}";
        if (Reserved != 0) return "reserved field is not zero";
        return null;
    }
}

/// <summary>CHANNEL_FAILED's payload: u32 reason, u32 text length, UTF-8 text (no NUL, at most 4088 bytes).</summary>
public static class ChannelFailedMessage
{
    public const int HeaderSize = 8;
    public const int MaxText = FrameHeader.MaxPayload - HeaderSize;

    /// <summary>Encodes the message (text cut at a character boundary to fit, NULs dropped); returns the payload length.</summary>
    public static int Write(Span<byte> b, ChannelFailure reason, string text)
    {
        text = text.Replace("\0", "");
        int chars = Math.Min(text.Length, MaxText);
        while (Encoding.UTF8.GetByteCount(text.AsSpan(0, chars)) > MaxText) chars--;
        if (chars > 0 && chars < text.Length && char.IsHighSurrogate(text[chars - 1])) chars--;
        int n = Encoding.UTF8.GetBytes(text.AsSpan(0, chars), b[HeaderSize..]);
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)reason);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)n);
        return HeaderSize + n;
    }

    public static bool TryRead(ReadOnlySpan<byte> b, out ChannelFailure reason, out string text)
    {
        reason = 0;
        text = "";
        if (b.Length < HeaderSize) return false;
        reason = (ChannelFailure)BinaryPrimitives.ReadUInt32LittleEndian(b);
        uint n = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
        if (n > MaxText || b.Length != HeaderSize + n) return false;
        text = Encoding.UTF8.GetString(b.Slice(HeaderSize, (int)n));
        return true;
    }
}
