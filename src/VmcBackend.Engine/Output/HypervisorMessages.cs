using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Output;

/// <summary>Every entry the hypervisor sends the partition, built in one place (ibmvmc.h formats).</summary>
internal sealed class HypervisorMessages(EntryOutput output)
{
    public void Init() => output.Post(CrqEntry.InitEntry(CrqInitType.Init));

    public void InitResponse() => output.Post(CrqEntry.InitEntry(CrqInitType.InitResponse));

    public void CapabilitiesResponse(CapabilitiesStatus status, VmcLimits limits, uint crqEntries)
    {
        Span<byte> e = stackalloc byte[CrqEntry.Size];
        new CapabilitiesEntry(VmcMessageType.CapabilitiesResponse, status, (byte)limits.MaxHmcs, (ushort)limits.PoolSize,
            (uint)limits.MaxMtu, (ushort)Math.Min(crqEntries, ushort.MaxValue), CapabilitiesEntry.ProtocolVersion).Write(e);
        output.Post(e);
    }

    /// <summary>ADD_BUF: buffer <paramref name="bufferId"/> of HMC <paramref name="index"/> at remote IOBA <paramref name="ioba"/>.</summary>
    public void AddBuffer(byte session, int index, int bufferId, uint ioba, BufferOwner owner)
        => output.Post(CrqEntry.Message(VmcMessageType.AddBuffer, VmcStatus.Success, session, (byte)index, (ushort)bufferId, ioba, owner));

    /// <summary>REM_BUF: the partition picks a free buffer of HMC <paramref name="index"/> and gives it back.</summary>
    public void RemoveBuffer(byte session, int index)
        => output.Post(CrqEntry.Message(VmcMessageType.RemoveBuffer, VmcStatus.Success, session, (byte)index, CrqEntry.InvalidBufferId));

    /// <summary>SIGNAL: a message of <paramref name="length"/> bytes waits in buffer <paramref name="bufferId"/>.</summary>
    public void Signal(byte session, int index, int bufferId, int length)
        => output.Post(CrqEntry.Message(VmcMessageType.Signal, VmcStatus.Success, session, (byte)index, (ushort)bufferId, (uint)length));

    public void OpenResponse(VmcStatus status, byte session, byte index, ushort bufferId)
        => output.Post(CrqEntry.Message(VmcMessageType.OpenResponse, status, session, index, bufferId));

    public void CloseResponse(VmcStatus status, byte session, byte index)
        => output.Post(CrqEntry.Message(VmcMessageType.CloseResponse, status, session, index, 0));
}
