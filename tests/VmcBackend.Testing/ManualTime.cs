namespace VmcBackend.Testing;

/// <summary>A clock that moves only when told (for the engine's timed retries), in milliseconds.</summary>
public sealed class ManualTime : TimeProvider
{
    public long Milliseconds { get; private set; }
    public override long TimestampFrequency => 1000;
    public override long GetTimestamp() => Milliseconds;
    public override DateTimeOffset GetUtcNow() => DateTimeOffset.UnixEpoch.AddMilliseconds(Milliseconds);
    public void Advance(TimeSpan by) => Milliseconds += (long)by.TotalMilliseconds;
}
