using System.Buffers.Binary;

namespace VmcBackend.Wire.Crq;

/// <summary>
/// CAP / CAP_RESP entry: 0 valid, 1 type, 2 status, 3-4 reserved, 5 max_hmc, 6-7 pool size (be16),
/// 8-11 max MTU (be32), 12-13 CRQ size (be16), 14-15 protocol version (be16, major in the high byte).
/// </summary>
public readonly record struct CapabilitiesEntry(
    VmcMessageType Type, CapabilitiesStatus Status, byte MaxHmcs, ushort PoolSize, uint MaxMtu, ushort CrqSize, ushort Version)
{
    /// <summary>Protocol version 1.1 spoken by the upstream driver.</summary>
    public const ushort ProtocolVersion = 0x0101;

    public int MajorVersion => Version >> 8;

    public static CapabilitiesEntry Read(ReadOnlySpan<byte> e) => new(
        (VmcMessageType)e[1], (CapabilitiesStatus)e[2], e[5],
        BinaryPrimitives.ReadUInt16BigEndian(e[6..]), BinaryPrimitives.ReadUInt32BigEndian(e[8..]),
        BinaryPrimitives.ReadUInt16BigEndian(e[12..]), BinaryPrimitives.ReadUInt16BigEndian(e[14..]));

    public void Write(Span<byte> e)
    {
        e[0] = (byte)CrqValid.Payload; e[1] = (byte)Type; e[2] = (byte)Status; e[3] = 0; e[4] = 0; e[5] = MaxHmcs;
        BinaryPrimitives.WriteUInt16BigEndian(e[6..], PoolSize);
        BinaryPrimitives.WriteUInt32BigEndian(e[8..], MaxMtu);
        BinaryPrimitives.WriteUInt16BigEndian(e[12..], CrqSize);
        BinaryPrimitives.WriteUInt16BigEndian(e[14..], Version);
    }
}

/// <summary>Protocol limits shared by both sides of the VMC (ibmvmc.h).</summary>
public static class VmcConstants
{
    public const int HmcIdLength = 32;
    public const int MinMtu = 4096, MaxMtu = 16384;
    public const int MinPool = 16, MaxPool = 64;
    public const int MinHmcs = 1, MaxHmcs = 2;
}
