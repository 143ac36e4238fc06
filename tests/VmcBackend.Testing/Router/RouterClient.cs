using System.Buffers.Binary;
using VmcBackend.Wire.Router;

namespace VmcBackend.Testing;

/// <summary>A router response as the management application parses it.</summary>
public readonly record struct RouterReply(uint MessageLength, uint Token, ushort Category, byte Flags, uint DataLength, ushort Opcode, ushort ReturnCode);

/// <summary>
/// Builds HMC command-router requests and checks responses, like a management application does.
/// Its own encoder, written from /work/shared/reference/hmc-command-router-facts.md (only the
/// opcode names are shared with the engine): a header bug cannot hide on both sides.
/// </summary>
public static class RouterClient
{
    public const int HeaderSize = 32;
    public const ushort RouterCategory = 0x8000;
    private const byte FlagResponseExpected = 0x80, FlagResponse = 0x40;

    /// <summary>Writes a request into <paramref name="buffer"/> and returns its length.</summary>
    public static int Build(Span<byte> buffer, RouterOpcode opcode, uint token, ReadOnlySpan<byte> data = default, ushort category = RouterCategory)
    {
        var h = buffer[..HeaderSize];
        h.Clear();
        h[0] = 0xDE; h[1] = 0xCA; h[2] = 0xFF; h[3] = HeaderSize;
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], (uint)(HeaderSize + data.Length));
        BinaryPrimitives.WriteUInt32BigEndian(h[8..], token);
        BinaryPrimitives.WriteUInt16BigEndian(h[12..], category);
        h[15] = FlagResponseExpected;
        BinaryPrimitives.WriteUInt32BigEndian(h[16..], (uint)data.Length);
        BinaryPrimitives.WriteUInt16BigEndian(h[20..], (ushort)opcode);
        data.CopyTo(buffer[HeaderSize..]);
        return HeaderSize + data.Length;
    }

    public static byte[] Request(RouterOpcode opcode, uint token, ReadOnlySpan<byte> data = default, ushort category = RouterCategory)
    {
        var m = new byte[HeaderSize + data.Length];
        Build(m, opcode, token, data, category);
        return m;
    }

    /// <summary>Parses a response; null when it is not a well-formed router response.</summary>
    public static RouterReply? Parse(ReadOnlySpan<byte> m)
    {
        if (m.Length < HeaderSize || m[0] != 0xDE || m[1] != 0xCA || m[2] != 0xFF || m[3] != HeaderSize) return null;
        var r = new RouterReply(BinaryPrimitives.ReadUInt32BigEndian(m[4..]), BinaryPrimitives.ReadUInt32BigEndian(m[8..]),
            BinaryPrimitives.ReadUInt16BigEndian(m[12..]), m[15], BinaryPrimitives.ReadUInt32BigEndian(m[16..]),
            BinaryPrimitives.ReadUInt16BigEndian(m[20..]), BinaryPrimitives.ReadUInt16BigEndian(m[22..]));
        if ((r.Flags & FlagResponse) == 0 || (r.Flags & FlagResponseExpected) != 0) return null;
        if (r.MessageLength != (uint)m.Length || r.DataLength != (uint)(m.Length - HeaderSize)) return null;
        return r;
    }
}

/// <summary>
/// Drives a <see cref="SimulatedPartition"/> like a management application: open /dev/ibmvmc, set
/// the HMC ID, exchange whole router messages. <see cref="Settle"/> runs the front-end and the
/// partition's kernel work in turns until both are quiet.
/// </summary>
public sealed class PartitionClient
{
    private readonly byte[] _rx = new byte[16384];
    private readonly SimulatedPartition _partition;
    private readonly Func<int>? _frontEnd;
    private readonly Action? _pump;

    /// <param name="frontEnd">Runs the front-end once and returns how much it did (0 when idle).</param>
    public PartitionClient(SimulatedPartition partition, Func<int> frontEnd)
    {
        _partition = partition;
        _frontEnd = frontEnd;
    }

    /// <param name="pump">Runs the front-end once (a front-end that cannot say whether it did anything).</param>
    public PartitionClient(SimulatedPartition partition, Action? pump = null)
    {
        _partition = partition;
        _pump = pump;
    }

    public SimulatedPartition Partition => _partition;

    /// <summary>Runs the front-end and the partition's pending work until neither does anything.</summary>
    public void Settle()
    {
        int quiet = 0;
        for (int i = 0; i < 1_000_000; i++)
        {
            int moved = 0;
            if (_frontEnd != null) moved = _frontEnd();
            else _pump?.Invoke();
            bool ran = _partition.RunPending();
            if (moved == 0 && !ran) { if (++quiet >= 2) return; }
            else quiet = 0;
        }
        throw new InvalidOperationException("the front-end and the partition never settle");
    }

    public SimulatedPartition.VmcFile OpenSession(string hmcId = "test-hmc")
    {
        Settle();
        var f = _partition.Open();
        var id = new byte[32];
        System.Text.Encoding.ASCII.GetBytes(hmcId).AsSpan(0, Math.Min(hmcId.Length, 32)).CopyTo(id);
        int rc = _partition.SetHmcId(f, id);
        if (rc != 0) throw new InvalidOperationException($"SETHMCID failed: {rc}");
        Settle();
        return f;
    }

    /// <summary>write() then settle then read(); returns the response bytes or throws with the errno.</summary>
    public byte[] Transact(SimulatedPartition.VmcFile f, ReadOnlySpan<byte> request)
    {
        int w = _partition.Write(f, request);
        if (w != request.Length) throw new InvalidOperationException($"write returned {w}");
        Settle();
        int r = _partition.Read(f, _rx.AsSpan(0, _partition.MaxMtu));
        if (r < 0) throw new InvalidOperationException($"read returned {r}");
        return _rx.AsSpan(0, r).ToArray();
    }

    public RouterReply Call(SimulatedPartition.VmcFile f, RouterOpcode opcode, uint token, ReadOnlySpan<byte> data, out byte[] response)
    {
        response = Transact(f, RouterClient.Request(opcode, token, data));
        return RouterClient.Parse(response) ?? throw new InvalidOperationException("malformed router response");
    }
}
