namespace VmcBackend.Engine.Faults;

/// <summary>Every fault vmcd can inject (docs/faults.md). Off unless a plan asks for it.</summary>
public enum FaultKind
{
    /// <summary>The back-end makes the front-end deliver a transport event (CHANNEL_FAILED).</summary>
    TransportEvent,
    /// <summary>The next hypervisor entries (optionally of one type) are lost.</summary>
    Drop,
    /// <summary>The next hypervisor entries (optionally of one type) are held back, in order.</summary>
    Delay,
    /// <summary>REM_BUF sent on an HMC index, optionally down to the partition's last buffer.</summary>
    RemoveBuffer,
    /// <summary>A burst of entries the driver ignores, filling the guest queue to the pacing limit.</summary>
    Flood,
    /// <summary>The next CAP_RESP carries other limits, version or status than the engine uses.</summary>
    CapabilitiesResponse,
    /// <summary>The next OPEN refused with a status, or answered naming another buffer id.</summary>
    OpenResponse,
    /// <summary>The next CLOSE_RESP carries a non-zero status (the driver then resets itself).</summary>
    CloseResponse,
    /// <summary>The next hypervisor SIGNAL claims another message length.</summary>
    SignalLength,
    /// <summary>The next H_COPY_RDMA fails with an rc.</summary>
    Rdma,
    /// <summary>The next H_REQUEST_VMC returns an rc.</summary>
    RequestVmc,
    /// <summary>The guest's next H_REG_CRQ returns H_RESOURCE or H_CLOSED (or another rc).</summary>
    RegisterQueue,
}

/// <summary>What arms a fault, or (for an action) fires it.</summary>
public enum FaultTrigger
{
    /// <summary>From the start (point faults only).</summary>
    Start,
    /// <summary>Capabilities negotiated (the engine answered CAP with success).</summary>
    Ready,
    /// <summary>An HMC session opened (OPEN_RESP success sent).</summary>
    Open,
    /// <summary>An HMC session closed by the partition (CLOSE_RESP sent).</summary>
    Close,
    /// <summary>A message from the partition was handled.</summary>
    Message,
    /// <summary>At once, on the next call into the engine (vmcctl inject).</summary>
    Now,
}

/// <summary>One entry of the catalogue: the fault's name in plans, the keys it takes, and the
/// driver code path or trap (numbered as in the driver facts) it exercises.</summary>
public sealed record FaultInfo(FaultKind Kind, string Name, bool IsAction, string[] Keys, string Exercises, string Summary);

/// <summary>The fault catalogue: names, keys and what each exercises in the ibmvmc driver.</summary>
public static class FaultCatalogue
{
    public static IReadOnlyList<FaultInfo> All { get; } =
    [
        new(FaultKind.TransportEvent, "transport-event", true, [],
            "ibmvmc_reset(adapter, true): every HMC returned with release_readers, state crqinit; trap 3 after a close",
            "the back-end sends CHANNEL_FAILED: the front-end writes a transport event (0xFF 0x02), reconnects and the new engine starts the handshake"),
        new(FaultKind.Drop, "drop", false, ["type"],
            "lost hypervisor entries: the driver waits for an answer that never comes (stuck states)",
            "the next entries the engine sends (of one type, or any) never reach the guest"),
        new(FaultKind.Delay, "delay", false, ["type", "ms"],
            "timing: answers that arrive late (trap 8 init race, EAGAIN/EBUSY windows)",
            "the next entries (of one type, or any) and everything after them are held ms milliseconds, in order"),
        new(FaultKind.RemoveBuffer, "rem-buf", true, ["hmc", "buffers", "last"],
            "ibmvmc_rem_buffer; with last=yes the partition's last buffer (an interface error the driver does not refuse)",
            "REM_BUF on an HMC index, buffers times; without last=yes the engine never asks for the partition's last buffer"),
        new(FaultKind.Flood, "flood", true, ["entries"],
            "ibmvmc_task draining a queue at the pacing limit (crq_size/2); above the back-end's backlog, CHANNEL_FAILED reason 1",
            "entries SIGNALs for session 0xFF on HMC index 0xFF (the driver's session check drops them without a log line, trap 10), posted at once"),
        new(FaultKind.CapabilitiesResponse, "cap-resp", false, ["max-hmc", "pool", "mtu", "version", "status"],
            "ibmvmc_process_capabilities: trap 1 (max_hmc 0 makes max_hmc_index 0xFFFFFFFF; pool 0 and MTU 0 not validated); major version mismatch fails the adapter",
            "the next CAP_RESP carries these values instead of the engine's (the engine keeps its own negotiation)"),
        new(FaultKind.OpenResponse, "open-resp", false, ["status", "buffer"],
            "ibmvmc_process_open_resp: a status frees the HMC and its buffers; a buffer id >= pool fails the HMC; trap 11 (any id is freed)",
            "status=N: the engine refuses the next OPEN with that status (and offers a new buffer, as after any failed open); buffer=N: the OPEN_RESP names that buffer id"),
        new(FaultKind.CloseResponse, "close-resp", false, ["status"],
            "ibmvmc_process_close_resp: a non-zero status makes the driver reset itself (H_FREE_CRQ, H_REG_CRQ, init): the RESET path",
            "the next CLOSE_RESP carries this status"),
        new(FaultKind.SignalLength, "signal-length", false, ["length", "copy"],
            "ibmvmc_recv_msg: trap 2 (6.1 does not bound msg_len; 6.12 drops it); a refused RDMA leaks the buffer (trap 5)",
            "the next hypervisor SIGNAL claims length bytes (N, or mtu+N); copy=allow lets the guest's RDMA read that much (the rest patterned 0xA5)"),
        new(FaultKind.Rdma, "rdma", false, ["rc", "dir"],
            "H_COPY_RDMA failures: send_open (trap 4: the HMC leaks), write() (trap 5 on 6.1: ignored, buffer leaked; 6.12: EIO), recv_msg (trap 5)",
            "the next H_COPY_RDMA (dir=to-hv: OPEN and write(); to-guest: receive; any) fails with rc"),
        new(FaultKind.RequestVmc, "request-vmc", false, ["rc"],
            "h_request_vmc: busy and long-busy retried; listed rcs to errno; trap 13 (unlisted rcs reach user space)",
            "the next H_REQUEST_VMC returns rc"),
        new(FaultKind.RegisterQueue, "reg-crq", false, ["rc", "ready-ms"],
            "ibmvmc_init_crq_queue (H_RESOURCE: free and register again; H_CLOSED: partner not ready) and ibmvmc_reset_task (anything but 0 or H_RESOURCE fails the driver for good)",
            "the guest's next H_REG_CRQ returns rc; with closed the queue is registered but the partner starts the handshake only ready-ms later"),
    ];

    public static FaultInfo Of(FaultKind kind) => All[(int)kind];

    public static FaultInfo? Find(string name)
    {
        foreach (var f in All) if (f.Name == name) return f;
        return null;
    }
}
