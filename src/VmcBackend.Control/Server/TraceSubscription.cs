using System.Buffers;
using System.Buffers.Binary;
using Nerdbank.Streams;
using VmcBackend.Control.Trace;

namespace VmcBackend.Control.Server;

/// <summary>
/// One trace reader (a trace channel): a <see cref="RecordRing"/> per VM it follows, filled by the
/// VMs' tracers, and a pump that forwards the rings to the channel: first the file header, then
/// the records as they come. A reader slower than the VMs gets back-pressure on its channel; the
/// rings then fill and lose records (LOST records say how many), the VMs never wait.
/// </summary>
internal sealed class TraceSubscription(int ringBytes = TraceSubscription.DefaultRingBytes)
{
    public const int DefaultRingBytes = 4 << 20;
    /// <summary>Most bytes forwarded per flush (keeps the channel's buffered memory small).</summary>
    private const int Chunk = 256 * 1024;
    private readonly Lock _lock = new();
    private readonly Dictionary<HostedVm, RecordRing> _rings = [];
    private bool _closed;
    private long _lostEnded;

    /// <summary>The ring for <paramref name="vm"/> (made on first use); null once the reader has left.</summary>
    public RecordRing? RingFor(HostedVm vm)
    {
        lock (_lock)
        {
            if (_closed) return null;
            if (!_rings.TryGetValue(vm, out var ring)) _rings[vm] = ring = new RecordRing(ringBytes);
            return ring;
        }
    }

    /// <summary>The reader left: no new ring is made; returns those that exist (their VMs drop them).</summary>
    public KeyValuePair<HostedVm, RecordRing>[] Close()
    {
        lock (_lock)
        {
            _closed = true;
            return _rings.ToArray();
        }
    }

    private KeyValuePair<HostedVm, RecordRing>[] Snapshot() { lock (_lock) return _rings.ToArray(); }

    private void Forget(HostedVm vm, RecordRing ring)
    {
        lock (_lock) _rings.Remove(vm);
        Interlocked.Add(ref _lostEnded, ring.LostTotal);
    }

    /// <summary>Records lost from VMs that have ended (their rings are gone).</summary>
    public long LostEnded => Interlocked.Read(ref _lostEnded);

    /// <summary>Forwards records to <paramref name="channel"/> until the reader closes it or <paramref name="ct"/> is cancelled.</summary>
    public async Task PumpAsync(MultiplexingStream.Channel channel, CancellationToken ct)
    {
        var output = channel.Output;
        var header = new byte[TraceFormat.FileHeaderSize];
        TraceFormat.WriteFileHeader(header, TraceFormat.NowNs(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000);
        output.Write(header);
        await output.FlushAsync(ct).ConfigureAwait(false);
        var lost = new byte[TraceFormat.RecordHeaderSize + 8];
        while (!ct.IsCancellationRequested && !channel.Completion.IsCompleted)
        {
            int moved = 0;
            foreach (var (vm, ring) in Snapshot())
            {
                bool ended = ring.Ended;          // read before draining: what the ring holds then is its last
                var (first, second) = ring.Available();
                int n = Math.Min(first.Length + second.Length, Chunk);
                if (n > 0)
                {
                    int a = Math.Min(n, first.Length);
                    output.Write(first.Span[..a]);
                    output.Write(second.Span[..(n - a)]);
                    ring.Consumed(n);
                    moved += n;
                }
                if (ended && ring.IsEmpty)
                {
                    if (ring.PendingLost > 0)
                    {
                        // The VM ended with records it could not report lost: the pump says so (it is the only writer now).
                        TraceFormat.WriteRecordHeader(lost, RecordType.Lost, 0, vm.Number, 8, TraceFormat.NowNs());
                        BinaryPrimitives.WriteInt64LittleEndian(lost.AsSpan(TraceFormat.RecordHeaderSize), ring.PendingLost);
                        output.Write(lost);
                        moved += lost.Length;
                    }
                    Forget(vm, ring);
                }
            }
            if (moved > 0) await output.FlushAsync(ct).ConfigureAwait(false);
            else await Task.WhenAny(Task.Delay(5, ct), channel.Completion).ConfigureAwait(false);
        }
    }
}
