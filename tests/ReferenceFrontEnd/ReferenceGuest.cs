using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// A whole test VM against a real vmcd: the reference spapr-vmc device, the simulated ibmvmc
/// partition on it, and a management client on /dev/ibmvmc.
/// </summary>
public sealed class ReferenceGuest : IDisposable
{
    public ReferenceGuest(string socketPath, int maxHmcs = 1, int mtu = 4096, int timeoutMs = 1000, ulong ramBytes = 16 << 20)
    {
        Device = new SpaprVmcDevice(socketPath, ramBytes, timeoutMs);
        try
        {
            Device.Connect(TimeSpan.FromSeconds(5));
            Partition = new SimulatedPartition(Device, mtu, maxHmcs: maxHmcs);
            Client = new PartitionClient(Partition, Device.Run);
            long rc = Partition.Probe();
            if (rc != 0) throw new IOException($"probe: H_REG_CRQ returned {rc}");
            Client.Settle();
            if (Partition.State != DriverState.Ready) throw new IOException($"adapter not ready after the handshake (driver state {Partition.State})");
        }
        catch
        {
            Device.Dispose();
            throw;
        }
    }

    public SpaprVmcDevice Device { get; }
    public SimulatedPartition Partition { get; }
    public PartitionClient Client { get; }

    /// <summary>Opens /dev/ibmvmc, sets the HMC ID and exchanges capabilities with the router.</summary>
    public SimulatedPartition.VmcFile OpenRouter(string hmcId = "hmc")
    {
        var f = Client.OpenSession(hmcId);
        var r = Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _);
        if (r.ReturnCode != 0) throw new IOException($"exchange-ops returned 0x{r.ReturnCode:X4}");
        return f;
    }

    /// <summary>One echo through the router; throws if it does not come back intact.</summary>
    public void Echo(SimulatedPartition.VmcFile f, ReadOnlySpan<byte> data, uint token)
    {
        var r = Client.Call(f, RouterOpcode.Echo, token, data, out var response);
        if (r.ReturnCode != 0 || r.Token != token || !response.AsSpan(RouterClient.HeaderSize).SequenceEqual(data))
            throw new IOException($"echo {token} came back wrong (rc 0x{r.ReturnCode:X4}, token {r.Token})");
    }

    public void Dispose() => Device.Dispose();
}
