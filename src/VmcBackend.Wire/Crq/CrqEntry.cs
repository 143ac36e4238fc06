using System.Buffers.Binary;

namespace VmcBackend.Wire.Crq;

/// <summary>First byte of a 16-byte CRQ entry.</summary>
public enum CrqValid : byte
{
    Payload = 0x80,
    Init = 0xC0,
    Transport = 0xFF,
}

/// <summary>Type byte of an init entry (valid 0xC0).</summary>
public enum CrqInitType : byte
{
    Init = 0x01,
    InitResponse = 0x02,
}

/// <summary>Type byte of a transport event (valid 0xFF).</summary>
public enum CrqTransportType : byte
{
    PartnerFailed = 0x01,
    PartnerClosed = 0x02,
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

/// <summary>Status byte of VMC responses (ibmvmc.h VMC_MSG_*).</summary>
public enum VmcStatus : byte
{
    Success = 0,
    InvalidHmcIndex = 1,
    InvalidBufferId = 2,
    ClosedHmc = 3,
    InterfaceFailure = 4,
    NoBuffer = 5,
}

/// <summary>Status byte of a CAP_RESP (ibmvmc.h, struct ibmvmc_admin_crq_msg: "either 1 - General
/// Failure, or 2 - Invalid Version").</summary>
public enum CapabilitiesStatus : byte
{
    Success = 0,
    GeneralFailure = 1,
    InvalidVersion = 2,
}

/// <summary>Buffer owner byte in ADD_BUF (VMC_BUF_OWNER_ALPHA / VMC_BUF_OWNER_HV).</summary>
public enum BufferOwner : byte
{
    Partition = 0,
    Hypervisor = 1,
}

/// <summary>
/// A VMC message entry (valid 0x80, every type but capabilities): byte 0 valid, 1 type, 2 status,
/// 3 owner, 4 HMC session, 5 HMC index, 6-7 buffer id (be16), 8-11 reserved, 12-15 LIOBA or
/// message length (be32). Also used to build init and transport entries (type only).
/// </summary>
public readonly record struct CrqEntry(
    CrqValid Valid, byte Type, VmcStatus Status, BufferOwner Owner, byte Session, byte HmcIndex, ushort BufferId, uint Word)
{
    public const int Size = 16;
    public const ushort InvalidBufferId = 0xFFFF;

    public VmcMessageType MessageType => (VmcMessageType)Type;

    /// <summary>The LIOBA of an ADD_BUF.</summary>
    public uint Lioba => Word;

    /// <summary>The message length of a SIGNAL.</summary>
    public uint MessageLength => Word;

    public static CrqEntry Read(ReadOnlySpan<byte> e) => new(
        (CrqValid)e[0], e[1], (VmcStatus)e[2], (BufferOwner)e[3], e[4], e[5],
        BinaryPrimitives.ReadUInt16BigEndian(e[6..]), BinaryPrimitives.ReadUInt32BigEndian(e[12..]));

    public void Write(Span<byte> e)
    {
        e[0] = (byte)Valid; e[1] = Type; e[2] = (byte)Status; e[3] = (byte)Owner; e[4] = Session; e[5] = HmcIndex;
        BinaryPrimitives.WriteUInt16BigEndian(e[6..], BufferId);
        BinaryPrimitives.WriteUInt32BigEndian(e[8..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(e[12..], Word);
    }

    public static CrqEntry Message(VmcMessageType type, VmcStatus status, byte session, byte index, ushort bufferId,
        uint word = 0, BufferOwner owner = BufferOwner.Partition)
        => new(CrqValid.Payload, (byte)type, status, owner, session, index, bufferId, word);

    public static CrqEntry InitEntry(CrqInitType initType) => new(CrqValid.Init, (byte)initType, 0, 0, 0, 0, 0, 0);

    public static CrqEntry TransportEvent(CrqTransportType eventType) => new(CrqValid.Transport, (byte)eventType, 0, 0, 0, 0, 0, 0);
}
