namespace VmcBackend.Wire.Hcall;

/// <summary>PAPR hypervisor-call return codes (arch/powerpc/include/asm/hvcall.h) used by the VMC path.</summary>
public static class HcallReturn
{
    public const long Success = 0;
    public const long Busy = 1;
    public const long Closed = 2;
    public const long NotAvailable = 3;
    public const long Hardware = -1;
    public const long Function = -2;
    public const long Privilege = -3;
    public const long Parameter = -4;
    public const long Authority = -10;
    public const long Permission = -11;
    public const long Dropped = -12;
    public const long SourceParm = -13;
    public const long DestParm = -14;
    public const long RemoteParm = -15;
    public const long Resource = -16;
}

/// <summary>Hypervisor-call opcodes of the VMC path.</summary>
public static class HcallOpcode
{
    public const ulong RegCrq = 0xFC, FreeCrq = 0x100, VioSignal = 0x104, SendCrq = 0x108, CopyRdma = 0x110, RequestVmc = 0x360;
}
