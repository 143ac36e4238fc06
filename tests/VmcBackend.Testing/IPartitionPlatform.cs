namespace VmcBackend.Testing;

/// <summary>
/// What the simulated partition (our stand-in for the Linux ibmvmc driver) runs on: the hypercalls
/// exactly as the driver issues them (IOBAs in its TCE windows, LIOBNs, raw PAPR return codes),
/// the VIO interrupt, and its DMA memory. Implementations: the in-process front-end
/// (FrontEnd.SpaprVmcModel) and the reference front-end (tests/ReferenceFrontEnd, over the socket
/// to vmcd, guest RAM in a memfd).
/// </summary>
public interface IPartitionPlatform
{
    uint LocalLiobn { get; }
    uint RemoteLiobn { get; }

    long RegCrq(ulong queueIoba, ulong queueBytes);
    long FreeCrq();
    long SendCrq(ulong word1, ulong word2);
    long CopyRdma(ulong length, ulong sourceLiobn, ulong sourceIoba, ulong destLiobn, ulong destIoba);
    long RequestVmc(out ulong drcIndex);

    /// <summary>H_VIO_SIGNAL(ua, enable ? 1 : 0): whether the device may raise the interrupt.</summary>
    long VioSignal(bool enable);

    /// <summary>request_irq: <paramref name="handler"/> runs for each interrupt pulse.</summary>
    void ConnectInterrupt(Action handler);

    /// <summary>Allocates page-aligned DMA memory mapped in the local TCE window; returns its IOBA.</summary>
    ulong AllocDma(int bytes);
    void ReadDma(ulong ioba, Span<byte> destination);
    void WriteDma(ulong ioba, ReadOnlySpan<byte> source);
    byte ReadDmaByteAcquire(ulong ioba);
    void WriteDmaByte(ulong ioba, byte value);
}
