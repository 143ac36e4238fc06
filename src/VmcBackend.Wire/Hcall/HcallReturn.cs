namespace VmcBackend.Wire.Hcall;

/// <summary>
/// PAPR hypervisor-call return codes (arch/powerpc/include/asm/hvcall.h) of the VMC path, as the
/// 64-bit values the guest sees in r3 (negative codes sign-extended).
/// </summary>
public enum HcallReturn : long
{
    Success = 0,
    Busy = 1,
    Closed = 2,
    NotAvailable = 3,
    Hardware = -1,
    Function = -2,
    Privilege = -3,
    Parameter = -4,
    Authority = -10,
    Permission = -11,
    Dropped = -12,
    SourceParm = -13,
    DestParm = -14,
    RemoteParm = -15,
    Resource = -16,
    /// <summary>First long-busy code (H_LONG_BUSY_ORDER_1_MSEC); the range runs to 9905.</summary>
    LongBusyFirst = 9900,
    LongBusyLast = 9905,
}
