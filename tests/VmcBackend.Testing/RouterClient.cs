using VmcBackend.Wire.Router;

namespace VmcBackend.Testing;

/// <summary>Builds HMC command-router requests and checks responses, like a management application does.</summary>
public static class RouterClient
{
    /// <summary>Writes a request into <paramref name="buffer"/> and returns its length.</summary>
    public static int Build(Span<byte> buffer, ushort opcode, uint token, ReadOnlySpan<byte> data = default, ushort category = RouterCategory.Router)
    {
        RouterHeader.Request(category, opcode, token, data.Length).Write(buffer);
        data.CopyTo(buffer[RouterHeader.Size..]);
        return RouterHeader.Size + data.Length;
    }

    public static byte[] Request(ushort opcode, uint token, ReadOnlySpan<byte> data = default, ushort category = RouterCategory.Router)
    {
        var m = new byte[RouterHeader.Size + data.Length];
        Build(m, opcode, token, data, category);
        return m;
    }

    /// <summary>Parses a response; null when it is not a well-formed router response.</summary>
    public static RouterHeader? Parse(ReadOnlySpan<byte> message)
    {
        if (message.Length < RouterHeader.Size || !RouterHeader.HasDescriptor(message)) return null;
        var h = RouterHeader.Read(message);
        if (!h.IsResponse || h.MessageLength != (uint)message.Length || h.DataLength != (uint)(message.Length - RouterHeader.Size)) return null;
        return h;
    }
}

/// <summary>
/// Drives a <see cref="SimulatedPartition"/> like a management application: open /dev/ibmvmc, set the
/// HMC ID (retrying while buffers are not there yet), and exchange whole router messages.
/// </summary>
public sealed class PartitionClient(SimulatedPartition partition, Action? pump = null)
{
    private readonly byte[] _rx = new byte[16384];
    public SimulatedPartition Partition => partition;

    /// <summary>Runs the hypervisor side and the partition's interrupt handler until quiet.</summary>
    public void Settle()
    {
        for (int i = 0; i < 4; i++) { pump?.Invoke(); if (partition.Settle() == 0 && i > 0) break; }
    }

    public SimulatedPartition.VmcFile OpenSession(string hmcId = "test-hmc")
    {
        Settle();
        var f = partition.Open();
        var id = new byte[32];
        System.Text.Encoding.ASCII.GetBytes(hmcId).AsSpan(0, Math.Min(hmcId.Length, 32)).CopyTo(id);
        int rc = partition.SetHmcId(f, id);
        if (rc != 0) throw new InvalidOperationException($"SETHMCID failed: {rc}");
        Settle();
        return f;
    }

    /// <summary>write() then settle then read(); returns the response bytes or throws with the errno.</summary>
    public byte[] Transact(SimulatedPartition.VmcFile f, ReadOnlySpan<byte> request)
    {
        int w = partition.Write(f, request);
        if (w != request.Length) throw new InvalidOperationException($"write returned {w}");
        Settle();
        int r = partition.Read(f, _rx.AsSpan(0, partition.MaxMtu));
        if (r < 0) throw new InvalidOperationException($"read returned {r}");
        return _rx.AsSpan(0, r).ToArray();
    }

    public RouterHeader Call(SimulatedPartition.VmcFile f, ushort opcode, uint token, ReadOnlySpan<byte> data, out byte[] response)
    {
        response = Transact(f, RouterClient.Request(opcode, token, data));
        return RouterClient.Parse(response) ?? throw new InvalidOperationException("malformed router response");
    }
}
