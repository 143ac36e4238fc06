using System.Buffers.Binary;

namespace VmcBackend.Testing;

/// <summary>
/// The driver's own view of the wire, written from drivers/misc/ibmvmc.h (linux 6.1 and 6.12 are
/// identical here) and not from the engine's codec, so that a codec mistake cannot hide on both
/// sides. Constants keep the header's names.
/// </summary>
internal static class IbmVmc
{
    public const ushort ProtocolVersion = 0x0101;          // IBMVMC_PROTOCOL_VERSION
    public const int MinBufPoolSize = 16, MaxBufPoolSize = 64, MinHmcs = 1, MaxHmcs = 2, MinMtu = 4096, MaxMtu = 4 * 4096;
    public const int HmcIdLen = 32;
    public const ushort InvalidBufferId = 0xFFFF;          // VMC_INVALID_BUFFER_ID

    public const byte MsgCap = 0x01, MsgCapResp = 0x81, MsgOpen = 0x02, MsgOpenResp = 0x82, MsgClose = 0x03, MsgCloseResp = 0x83,
        MsgAddBuf = 0x04, MsgAddBufResp = 0x84, MsgRemBuf = 0x05, MsgRemBufResp = 0x85, MsgSignal = 0x06;

    public const byte MsgSuccess = 0, MsgInvalidHmcIndex = 1, MsgInvalidBufferId = 2, MsgClosedHmc = 3, MsgInterfaceFailure = 4, MsgNoBuffer = 5;

    public const byte BufOwnerAlpha = 0, BufOwnerHv = 1;

    // arch/powerpc/include/asm/hvcall.h
    public const long HSuccess = 0, HBusy = 1, HClosed = 2, HNotAvailable = 3, HHardware = -1, HFunction = -2, HParameter = -4,
        HAuthority = -10, HResource = -16, HLongBusyOrder1Msec = 9900, HLongBusyOrder100Sec = 9905;

    public static bool IsLongBusy(long rc) => rc is >= HLongBusyOrder1Msec and <= HLongBusyOrder100Sec;
}

/// <summary>struct ibmvmc_crq_msg: valid, type, status, var1 (rsvd/owner), hmc_session,
/// hmc_index, var2 (be16 rsvd/buffer_id), be32 rsvd, var3 (be32 rsvd/lioba/msg_len).</summary>
internal struct CrqMsg
{
    public byte Valid, Type, Status, Var1, HmcSession, HmcIndex;
    public ushort Var2;
    public uint Rsvd, Var3;

    public readonly byte Owner => Var1;
    public readonly ushort BufferId => Var2;
    public readonly uint Lioba => Var3;
    public readonly uint MsgLen => Var3;

    public static CrqMsg Decode(ReadOnlySpan<byte> m) => new()
    {
        Valid = m[0], Type = m[1], Status = m[2], Var1 = m[3], HmcSession = m[4], HmcIndex = m[5],
        Var2 = BinaryPrimitives.ReadUInt16BigEndian(m.Slice(6, 2)),
        Rsvd = BinaryPrimitives.ReadUInt32BigEndian(m.Slice(8, 4)),
        Var3 = BinaryPrimitives.ReadUInt32BigEndian(m.Slice(12, 4)),
    };

    /// <summary>The two words ibmvmc_send_crq passes to H_SEND_CRQ: be64_to_cpu of the struct's halves.</summary>
    public readonly (ulong Word1, ulong Word2) ToWords()
    {
        Span<byte> m = stackalloc byte[16];
        m[0] = Valid; m[1] = Type; m[2] = Status; m[3] = Var1; m[4] = HmcSession; m[5] = HmcIndex;
        BinaryPrimitives.WriteUInt16BigEndian(m.Slice(6, 2), Var2);
        BinaryPrimitives.WriteUInt32BigEndian(m.Slice(8, 4), Rsvd);
        BinaryPrimitives.WriteUInt32BigEndian(m.Slice(12, 4), Var3);
        return (BinaryPrimitives.ReadUInt64BigEndian(m), BinaryPrimitives.ReadUInt64BigEndian(m[8..]));
    }
}

/// <summary>struct ibmvmc_admin_crq_msg: valid, type, status, rsvd[2], max_hmc, be16 pool_size,
/// be32 max_mtu, be16 crq_size, be16 version.</summary>
internal struct AdminCrqMsg
{
    public byte Valid, Type, Status, MaxHmc;
    public ushort PoolSize, CrqSize, Version;
    public uint MaxMtu;

    public static AdminCrqMsg Decode(ReadOnlySpan<byte> m) => new()
    {
        Valid = m[0], Type = m[1], Status = m[2], MaxHmc = m[5],
        PoolSize = BinaryPrimitives.ReadUInt16BigEndian(m.Slice(6, 2)),
        MaxMtu = BinaryPrimitives.ReadUInt32BigEndian(m.Slice(8, 4)),
        CrqSize = BinaryPrimitives.ReadUInt16BigEndian(m.Slice(12, 2)),
        Version = BinaryPrimitives.ReadUInt16BigEndian(m.Slice(14, 2)),
    };

    public readonly (ulong Word1, ulong Word2) ToWords()
    {
        Span<byte> m = stackalloc byte[16];
        m.Clear();
        m[0] = Valid; m[1] = Type; m[2] = Status; m[5] = MaxHmc;
        BinaryPrimitives.WriteUInt16BigEndian(m.Slice(6, 2), PoolSize);
        BinaryPrimitives.WriteUInt32BigEndian(m.Slice(8, 4), MaxMtu);
        BinaryPrimitives.WriteUInt16BigEndian(m.Slice(12, 2), CrqSize);
        BinaryPrimitives.WriteUInt16BigEndian(m.Slice(14, 2), Version);
        return (BinaryPrimitives.ReadUInt64BigEndian(m), BinaryPrimitives.ReadUInt64BigEndian(m[8..]));
    }
}
