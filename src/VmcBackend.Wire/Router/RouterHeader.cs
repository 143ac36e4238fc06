using System.Buffers.Binary;

namespace VmcBackend.Wire.Router;

/// <summary>
/// The 32-byte big-endian header of an HMC command-router message (the payload inside a VMC
/// message): 0-2 descriptor DE CA FF, 3 header length (32), 4-7 message length (header + data),
/// 8-11 correlation token, 12-13 target category, 14 reserved, 15 flags, 16-19 data length,
/// 20-21 opcode, 22-23 return code, 24-31 reserved. A whole message is at most 4096 bytes.
/// </summary>
public readonly record struct RouterHeader(
    byte HeaderLength, uint MessageLength, uint Token, RouterCategory Category, RouterFlags Flags, uint DataLength,
    RouterOpcode Opcode, RouterReturnCode ReturnCode)
{
    public const int Size = 32;
    /// <summary>The router's message limit, whatever MTU the VMC negotiated.</summary>
    public const int MaxMessageLength = 4096;
    public const byte Descriptor0 = 0xDE, Descriptor1 = 0xCA, Descriptor2 = 0xFF;

    /// <summary>True when the first three bytes are the router descriptor.</summary>
    public static bool HasDescriptor(ReadOnlySpan<byte> m)
        => m.Length >= 3 && m[0] == Descriptor0 && m[1] == Descriptor1 && m[2] == Descriptor2;

    public bool IsResponse => (Flags & RouterFlags.Response) != 0;

    public static RouterHeader Read(ReadOnlySpan<byte> m) => new(
        m[3], BinaryPrimitives.ReadUInt32BigEndian(m[4..]), BinaryPrimitives.ReadUInt32BigEndian(m[8..]),
        (RouterCategory)BinaryPrimitives.ReadUInt16BigEndian(m[12..]), (RouterFlags)m[15], BinaryPrimitives.ReadUInt32BigEndian(m[16..]),
        (RouterOpcode)BinaryPrimitives.ReadUInt16BigEndian(m[20..]), (RouterReturnCode)BinaryPrimitives.ReadUInt16BigEndian(m[22..]));

    public void Write(Span<byte> m)
    {
        m[..Size].Clear();
        m[0] = Descriptor0; m[1] = Descriptor1; m[2] = Descriptor2; m[3] = HeaderLength;
        BinaryPrimitives.WriteUInt32BigEndian(m[4..], MessageLength);
        BinaryPrimitives.WriteUInt32BigEndian(m[8..], Token);
        BinaryPrimitives.WriteUInt16BigEndian(m[12..], (ushort)Category);
        m[15] = (byte)Flags;
        BinaryPrimitives.WriteUInt32BigEndian(m[16..], DataLength);
        BinaryPrimitives.WriteUInt16BigEndian(m[20..], (ushort)Opcode);
        BinaryPrimitives.WriteUInt16BigEndian(m[22..], (ushort)ReturnCode);
    }

    /// <summary>The response header to <paramref name="request"/>.</summary>
    public static RouterHeader ResponseTo(in RouterHeader request, RouterReturnCode returnCode, int dataLength)
        => new(Size, (uint)(Size + dataLength), request.Token, request.Category, RouterFlags.Response, (uint)dataLength, request.Opcode, returnCode);
}

[Flags]
public enum RouterFlags : byte
{
    None = 0,
    Response = 0x40,
    ResponseExpected = 0x80,
}

/// <summary>Target categories: 0x8000 is the router itself; 0x8000..0x8008 is the defined range.</summary>
public enum RouterCategory : ushort
{
    Router = 0x8000,
    First = 0x8000,
    Last = 0x8008,
}

public enum RouterOpcode : ushort
{
    ExchangeOps = 0x0001,
    Close = 0x0002,
    Echo = 0x0103,
}

/// <summary>Router return codes.</summary>
public enum RouterReturnCode : ushort
{
    Good = 0x0000,
    InvalidOpcode = 0x8001,
    InvalidData = 0x8003,
    GenericError = 0x8006,
    BufferNotAvailable = 0x8020,
    InvalidSize = 0x8022,
    InvalidTarget = 0x8023,
    InvalidCategory = 0x8024,
    PathClosed = 0x8026,
    InvalidState = 0x8028,
    AlreadyOpen = 0x802B,
    InvalidResponse = 0x802D,
}
