using System.Buffers.Binary;

namespace VmcBackend.Wire.Crq;

/// <summary>First byte of a 16-byte CRQ entry.</summary>
public static class CrqValid
{
    public const byte Payload = 0x80;
    public const byte Init = 0xC0;
    public const byte Transport = 0xFF;
}

/// <summary>Type byte of an init entry (valid 0xC0).</summary>
public static class CrqInitType
{
    public const byte Init = 0x01;
    public const byte InitResponse = 0x02;
}

/// <summary>Type byte of a transport event (valid 0xFF).</summary>
public static class CrqTransportType
{
    public const byte PartnerFailed = 0x01;
    public const byte PartnerClosed = 0x02;
}

/// <summary>VMC message types carried in payload entries (valid 0x80).</summary>
public enum VmcMessageType : byte
{
    Capabilities = 0x01,
    CapabilitiesResponse = 0x81,
    Open = 0x02,
    OpenResponse = 0x82,
    Close = 0x03,
    CloseResponse = 0x83,
    AddBuffer = 0x04,
    AddBufferResponse = 0x84,
    RemoveBuffer = 0x05,
    RemoveBufferResponse = 0x85,
    Signal = 0x06,
}

/// <summary>Status byte of VMC responses.</summary>
public enum VmcStatus : byte
{
    Success = 0,
    InvalidHmcIndex = 1,
    InvalidBufferId = 2,
    ClosedHmc = 3,
    InterfaceFailure = 4,
    NoBuffer = 5,
}

/// <summary>Buffer owner byte in ADD_BUF.</summary>
public static class BufferOwner
{
    public const byte Partition = 0;
    public const byte Hypervisor = 1;
}

/// <summary>
/// A VMC message entry (valid 0x80, every type but capabilities): byte 0 valid, 1 type, 2 status,
/// 3 owner, 4 HMC session, 5 HMC index, 6-7 buffer id (be16), 8-11 reserved, 12-15 LIOBA or
/// message length (be32). Also used to build init and transport entries (type only).
/// </summary>
public readonly record struct CrqEntry(
    byte Valid, byte Type, byte Status, byte Owner, byte Session, byte HmcIndex, ushort BufferId, uint Word)
{
    public const int Size = 16;
    public const ushort InvalidBufferId = 0xFFFF;

    public VmcMessageType MessageType => (VmcMessageType)Type;

    /// <summary>The LIOBA of an ADD_BUF.</summary>
    public uint Lioba => Word;

    /// <summary>The message length of a SIGNAL.</summary>
    public uint MessageLength => Word;

    public static CrqEntry Read(ReadOnlySpan<byte> e) => new(
        e[0], e[1], e[2], e[3], e[4], e[5],
        BinaryPrimitives.ReadUInt16BigEndian(e[6..]), BinaryPrimitives.ReadUInt32BigEndian(e[12..]));

    public void Write(Span<byte> e)
    {
        e[0] = Valid; e[1] = Type; e[2] = Status; e[3] = Owner; e[4] = Session; e[5] = HmcIndex;
        BinaryPrimitives.WriteUInt16BigEndian(e[6..], BufferId);
        BinaryPrimitives.WriteUInt32BigEndian(e[8..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(e[12..], Word);
    }

    public static CrqEntry Message(VmcMessageType type, VmcStatus status, byte session, byte index, ushort bufferId, uint word = 0, byte owner = 0)
        => new(CrqValid.Payload, (byte)type, (byte)status, owner, session, index, bufferId, word);

    public static CrqEntry InitEntry(byte initType) => new(CrqValid.Init, initType, 0, 0, 0, 0, 0, 0);

    public static CrqEntry TransportEvent(byte eventType) => new(CrqValid.Transport, eventType, 0, 0, 0, 0, 0, 0);
}
