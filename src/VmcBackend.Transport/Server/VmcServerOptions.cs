namespace VmcBackend.Transport.Server;

/// <summary>How vmcd's listener admits and serves front-ends.</summary>
public sealed record VmcServerOptions
{
    /// <summary>Most front-ends served at once; beyond it a new connection gets CHANNEL_FAILED and is closed.</summary>
    public int MaxConnections { get; init; } = 128;

    /// <summary>
    /// Decides whether a connected peer is served: null to serve it, else the reason it is refused
    /// (logged). Default (null): only vmcd's own uid and root (SO_PEERCRED).
    /// </summary>
    public Func<System.Net.Sockets.Socket, string?>? AdmitPeer { get; init; }

    /// <summary>
    /// How long a connection polls the shared rings after a pass before sleeping in epoll
    /// (microseconds; 0 never spins). See scripts/bench.sh for what it buys.
    /// </summary>
    public int SpinMicroseconds { get; init; }

    /// <summary>Told when each connection's back-end exists and when the connection ends (vmcd's control plane).</summary>
    public Connection.IConnectionListener? Connections { get; init; }
}
