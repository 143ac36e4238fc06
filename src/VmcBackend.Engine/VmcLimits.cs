using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine;

/// <summary>The engine's own limits, offered in CAP_RESP and GET_CONFIG. Defaults match the driver's.</summary>
public sealed record VmcLimits
{
    public int MaxMtu { get; init; } = 4096;      // 4096..16384
    public int PoolSize { get; init; } = 32;      // 16..64 buffers per HMC
    public int MaxHmcs { get; init; } = 1;        // 1..2
    public uint DrcIndex { get; init; } = 0x8100_0001;
    /// <summary>Entries the engine holds, in order, while the output ring is full; beyond it the channel fails.</summary>
    public int OutputBacklog { get; init; } = 1024;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for limits outside the protocol's
    /// ranges. Called once per configuration, by <see cref="VmcEngine.Factory"/>.</summary>
    public void Validate()
    {
        if (MaxMtu is < VmcConstants.MinMtu or > VmcConstants.MaxMtu) throw new ArgumentOutOfRangeException(nameof(MaxMtu), MaxMtu, $"MTU must be {VmcConstants.MinMtu}..{VmcConstants.MaxMtu}");
        if (PoolSize is < VmcConstants.MinPool or > VmcConstants.MaxPool) throw new ArgumentOutOfRangeException(nameof(PoolSize), PoolSize, $"pool size must be {VmcConstants.MinPool}..{VmcConstants.MaxPool}");
        if (MaxHmcs is < VmcConstants.MinHmcs or > VmcConstants.MaxHmcs) throw new ArgumentOutOfRangeException(nameof(MaxHmcs), MaxHmcs, $"HMC count must be {VmcConstants.MinHmcs}..{VmcConstants.MaxHmcs}");
        if (OutputBacklog is < 16 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(OutputBacklog), OutputBacklog, "output backlog must be 16..1048576");
    }
}

/// <summary>Running totals of one engine (read by vmcd's statistics and the benchmarks). Written
/// only on the engine's thread.</summary>
public sealed class EngineCounters
{
    public long EntriesReceived, EntriesPosted, MessagesIn, MessagesOut, Dropped, RdmaCopies, RdmaBytes, RdmaFailures;
    public long SessionsOpened, SessionsClosed, BuffersRemoved, BuffersReclaimed, OutboundDiscarded, OutboundRefused;
}
