using System.Buffers.Binary;

namespace VmcBackend.Wire.Router;

/// <summary>
/// The 32-byte big-endian header of an HMC command-router message (the payload inside a VMC
/// message): 0-2 descriptor DE CA FF, 3 header length (32), 4-7 message length (header + data),
/// 8-11 correlation token, 12-13 target category, 14 reserved, 15 flags, 16-19 data length,
/// 20-21 opcode, 22-23 return code, 24-31 reserved.
/// </summary>
public readonly record struct RouterHeader(
    byte HeaderLength, uint MessageLength, uint Token, ushort Category, byte Flags, uint DataLength, ushort Opcode, ushort ReturnCode)
{
    public const int Size = 32;
    public const byte Descriptor0 = 0xDE, Descriptor1 = 0xCA, Descriptor2 = 0xFF;

    /// <summary>True when the first three bytes are the router descriptor.</summary>
    public static bool HasDescriptor(ReadOnlySpan<byte> m)
        => m.Length >= 3 && m[0] == Descriptor0 && m[1] == Descriptor1 && m[2] == Descriptor2;

    public bool IsResponse => (Flags & RouterFlags.Response) != 0;

    public static RouterHeader Read(ReadOnlySpan<byte> m) => new(
        m[3], BinaryPrimitives.ReadUInt32BigEndian(m[4..]), BinaryPrimitives.ReadUInt32BigEndian(m[8..]),
        BinaryPrimitives.ReadUInt16BigEndian(m[12..]), m[15], BinaryPrimitives.ReadUInt32BigEndian(m[16..]),
        BinaryPrimitives.ReadUInt16BigEndian(m[20..]), BinaryPrimitives.ReadUInt16BigEndian(m[22..]));

    public void Write(Span<byte> m)
    {
        m[..Size].Clear();
        m[0] = Descriptor0; m[1] = Descriptor1; m[2] = Descriptor2; m[3] = HeaderLength;
        BinaryPrimitives.WriteUInt32BigEndian(m[4..], MessageLength);
        BinaryPrimitives.WriteUInt32BigEndian(m[8..], Token);
        BinaryPrimitives.WriteUInt16BigEndian(m[12..], Category);
        m[15] = Flags;
        BinaryPrimitives.WriteUInt32BigEndian(m[16..], DataLength);
        BinaryPrimitives.WriteUInt16BigEndian(m[20..], Opcode);
        BinaryPrimitives.WriteUInt16BigEndian(m[22..], ReturnCode);
    }

    /// <summary>A request header for <paramref name="dataLength"/> bytes of data.</summary>
    public static RouterHeader Request(ushort category, ushort opcode, uint token, int dataLength)
        => new(Size, (uint)(Size + dataLength), token, category, RouterFlags.ResponseExpected, (uint)dataLength, opcode, 0);

    /// <summary>The response header to <paramref name="request"/>.</summary>
    public static RouterHeader ResponseTo(in RouterHeader request, ushort returnCode, int dataLength)
        => new(Size, (uint)(Size + dataLength), request.Token, request.Category, RouterFlags.Response, (uint)dataLength, request.Opcode, returnCode);
}

public static class RouterFlags
{
    public const byte ResponseExpected = 0x80;
    public const byte Response = 0x40;
}

public static class RouterCategory
{
    public const ushort Router = 0x8000;
    public const ushort First = 0x8000;
    public const ushort Last = 0x8008;
}

public static class RouterOpcode
{
    public const ushort ExchangeOps = 0x0001;
    public const ushort Close = 0x0002;
    public const ushort Echo = 0x0103;
}

/// <summary>Router return codes.</summary>
public static class RouterReturnCode
{
    public const ushort Good = 0x0000;
    public const ushort InvalidOpcode = 0x8001;
    public const ushort InvalidData = 0x8003;
    public const ushort GenericError = 0x8006;
    public const ushort BufferNotAvailable = 0x8020;
    public const ushort InvalidSize = 0x8022;
    public const ushort InvalidTarget = 0x8023;
    public const ushort InvalidCategory = 0x8024;
    public const ushort PathClosed = 0x8026;
    public const ushort InvalidState = 0x8028;
    public const ushort AlreadyOpen = 0x802B;
}
