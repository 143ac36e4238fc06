namespace VmcBackend.Engine.Sessions;

/// <summary>
/// What serves one HMC index: the HMC command router by default; a host-side endpoint (issue 13)
/// or a scripted responder can replace it. Called on the engine's thread; must not block.
/// </summary>
public interface IHmcSessionHandler
{
    /// <summary>The partition opened a session with this 32-byte HMC ID. <paramref name="output"/>
    /// stays usable until <see cref="Closed"/>: the handler may keep it and send at any time.</summary>
    void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId);

    /// <summary>One whole message from the partition (valid only during the call).</summary>
    void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message);

    /// <summary>The session ended (close, reopen, transport event, reset): the output is dead.</summary>
    void Closed();
}

/// <summary>Sends messages to the partition on one HMC session.</summary>
public interface IHmcSessionOutput
{
    /// <summary>Negotiated MTU: the largest message <see cref="TrySend"/> accepts.</summary>
    int Mtu { get; }

    /// <summary>True while the session is open.</summary>
    bool IsOpen { get; }

    /// <summary>
    /// Queues a message for the partition, in reply or unsolicited, at any time while the session
    /// is open (on the engine's thread: inside a handler callback or any other call into the
    /// engine). It is delivered even while the guest is only blocked in read(). False (and logged)
    /// if it is empty or larger than the MTU, the session is not open, or the bounded outbound
    /// queue is full; true means it will reach the partition unless the session ends first
    /// (counted and logged as discarded).
    /// </summary>
    bool TrySend(ReadOnlySpan<byte> message);
}
