namespace VmcBackend.Testing;

/// <summary>
/// What the simulated partition (our stand-in for the Linux ibmvmc driver) runs on: the hypercalls
/// exactly as the driver issues them (IOBAs in its TCE windows, LIOBNs), and its DMA memory.
/// Implementations: in-process (hypercalls go straight to a VmcEngine, like QEMU would translate
/// them) and the reference front-end (hypercalls go over the vmc-user socket to vmcd, guest RAM is
/// a memfd).
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

    /// <summary>Allocates page-aligned DMA memory mapped in the local TCE window; returns its IOBA.</summary>
    ulong AllocDma(int bytes);
    void ReadDma(ulong ioba, Span<byte> destination);
    void WriteDma(ulong ioba, ReadOnlySpan<byte> source);
    byte ReadDmaByteAcquire(ulong ioba);
    void WriteDmaByte(ulong ioba, byte value);
}
