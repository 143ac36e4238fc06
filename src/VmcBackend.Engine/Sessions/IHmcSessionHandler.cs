namespace VmcBackend.Engine.Sessions;

/// <summary>
/// What serves one HMC session: the HMC command router by default; a host-side endpoint or a
/// scripted responder can replace it. Called on the engine's thread; must not block.
/// </summary>
public interface IHmcSessionHandler
{
    /// <summary>The partition opened the session with this 32-byte HMC ID.</summary>
    void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId);

    /// <summary>One whole message from the partition (valid only during the call).</summary>
    void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message);

    /// <summary>The session ended (close, transport event, reset).</summary>
    void Closed();
}

/// <summary>Sends messages to the partition on one HMC session.</summary>
public interface IHmcSessionOutput
{
    /// <summary>Negotiated MTU: the largest message <see cref="TrySend"/> accepts.</summary>
    int Mtu { get; }

    /// <summary>Queues a message for the partition. False (and logged) if it is larger than the MTU,
    /// the session is not open, or the bounded outbound queue is full.</summary>
    bool TrySend(ReadOnlySpan<byte> message);
}
