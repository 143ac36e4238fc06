namespace VmcBackend.Transport.Server;

/// <summary>How vmcd's listener admits and serves front-ends.</summary>
public sealed record VmcServerOptions
{
    /// <summary>Most front-ends served at once; beyond it a new connection gets CHANNEL_FAILED and is closed.</summary>
    public int MaxConnections { get; init; } = 128;

    /// <summary>
    /// Peer uids allowed besides vmcd's own uid and root (SO_PEERCRED); every other peer is refused
    /// with a log line.
    /// </summary>
    public IReadOnlyList<uint> AllowedUids { get; init; } = [];

    /// <summary>Peers whose primary gid is in this list are allowed too.</summary>
    public IReadOnlyList<uint> AllowedGids { get; init; } = [];

    /// <summary>
    /// How long a connection polls the shared rings after a pass before sleeping in epoll
    /// (microseconds; 0 never spins). See scripts/bench.sh for what it buys.
    /// </summary>
    public int SpinMicroseconds { get; init; }
}
