using System.Text.Json;
using System.Text.Json.Serialization;

namespace VmcBackend.Control.Protocol;

/// <summary>
/// The control protocol's constants (docs/control.md): the greeting line vmcd sends first, the
/// channel names, and the JSON requests and responses of the control channel (one JSON object
/// per line, snake_case names).
/// </summary>
public static class ControlProtocol
{
    public const int Version = 1;
    /// <summary>Longest greeting line and longest control-channel line, in bytes.</summary>
    public const int MaxGreeting = 1024, MaxLine = 64 * 1024;
    /// <summary>The channel the client offers first; requests and responses travel on it.</summary>
    public const string ControlChannel = "control";

    /// <summary>The greeting of an admitted client.</summary>
    public static string Welcome => $"vmcd-control {Version} ok";

    /// <summary>The greeting of a refused client; vmcd closes the connection after it.</summary>
    public static string Refusal(string reason) => $"vmcd-control {Version} refused {reason}";
}

/// <summary>Operations of the control channel.</summary>
public static class ControlOps
{
    public const string Status = "status";
    public const string Trace = "trace";
    public const string Attach = "attach";
    public const string Inject = "inject";
}

/// <summary>Machine-readable error codes of a refused request.</summary>
public static class ControlErrors
{
    /// <summary>The request itself is malformed or names an unknown operation.</summary>
    public const string BadRequest = "bad-request";
    /// <summary>No VM of that name or pid is connected (or several match).</summary>
    public const string UnknownVm = "unknown-vm";
    /// <summary>The VM has no such HMC index.</summary>
    public const string UnknownHmc = "unknown-hmc";
    /// <summary>The HMC is attached to another client already (the first keeps it).</summary>
    public const string Busy = "busy";
    /// <summary>The VM did not answer in time or went away meanwhile.</summary>
    public const string Unavailable = "unavailable";
}

/// <summary>A request on the control channel.</summary>
public sealed record ControlRequest
{
    /// <summary>The operation (<see cref="ControlOps"/>).</summary>
    public string Op { get; init; } = "";
    /// <summary>Optional; echoed in the response.</summary>
    public long? Id { get; init; }
    /// <summary>A VM by name (<c>vm3</c>) or by its front-end's pid; optional when exactly one VM is connected (attach), or for all VMs (status, trace).</summary>
    public string? Vm { get; init; }
    /// <summary>An HMC index (attach).</summary>
    public int? Hmc { get; init; }
    /// <summary>Operation-specific arguments (for operations added later, such as fault injection).</summary>
    public JsonElement? Args { get; init; }
}

/// <summary>The answer to one request, in request order.</summary>
public sealed record ControlResponse
{
    public long? Id { get; init; }
    public bool Ok { get; init; }
    /// <summary>When refused: one line saying why and what to do.</summary>
    public string? Error { get; init; }
    /// <summary>When refused: <see cref="ControlErrors"/>.</summary>
    public string? Code { get; init; }
    /// <summary>trace, attach: the channel vmcd offers next, for the client to accept.</summary>
    public string? Channel { get; init; }
    /// <summary>status.</summary>
    public StatusReport? Status { get; init; }
    /// <summary>inject: the fault as vmcd took it and what it did at once (empty: it waits for its point or trigger).</summary>
    public FaultReport? Fault { get; init; }

    public static ControlResponse Refused(string code, string error) => new() { Ok = false, Code = code, Error = error };
}

/// <summary>What <c>vmcctl inject</c> shows: the VM, the rule (docs/faults.md), what it did at once.</summary>
public sealed record FaultReport(string Vm, string Rule, IReadOnlyList<string> Fired);

/// <summary>What <c>vmcctl status</c> shows.</summary>
public sealed record StatusReport(VmcdStatus Vmcd, IReadOnlyList<VmStatus> Vms);

public sealed record VmcdStatus(int Pid, double UptimeSeconds, string DataSocket, int TraceReaders);

/// <summary>One connected VM (front-end connection), read on its own thread.</summary>
public sealed record VmStatus(
    string Name, uint Pid, string State, int Mtu, int PoolSize, int Hmcs, string DrcIndex,
    VmLimitsStatus Offered, int Backlog, int TraceReaders, IReadOnlyDictionary<string, long> Counters, IReadOnlyList<HmcStatus> Hmc);

public sealed record VmLimitsStatus(int MaxMtu, int PoolSize, int MaxHmcs);

/// <summary>One HMC index of a VM.</summary>
public sealed record HmcStatus(
    int Index, bool Open, int Session, string HmcId, string Handler, uint? AttachedPid, BufferStatus Buffers, int OutboundQueued);

/// <summary>Buffers of one HMC by owner: the partition's (of which <c>Delivered</c> carry a message it has not read yet) and the hypervisor's.</summary>
public sealed record BufferStatus(int Partition, int Hypervisor, int Delivered);

/// <summary>Source-generated JSON (NativeAOT: no reflection).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(ControlRequest))]
[JsonSerializable(typeof(ControlResponse))]
[JsonSerializable(typeof(StatusReport))]
public sealed partial class ControlJson : JsonSerializerContext;
