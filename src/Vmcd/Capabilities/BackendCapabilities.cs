using System.Numerics;
using System.Text.Json;
using VmcBackend.Engine;
using VmcBackend.Transport.Connection;
using VmcBackend.Transport.Protocol;
using VmcBackend.Wire.Crq;

namespace Vmcd.Capabilities;

/// <summary>
/// The --print-capabilities document (vhost-user "back-end program conventions"): the back-end
/// type, the vmc-user protocol version and feature bits this build offers, and the ranges of the
/// limits it accepts, all read from the code's own constants.
/// </summary>
public static class BackendCapabilities
{
    /// <summary>vmc-user feature bit names (docs/protocol.md, "Feature bits"), by bit number.</summary>
    private static readonly string[] FeatureNames = ["mem-table-updates"];

    private static string FeatureName(int bit) => bit < FeatureNames.Length ? FeatureNames[bit] : $"bit-{bit}";

    public static void Write(Stream output)
    {
        var defaults = new VmcLimits();
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("type", "vmc");
        w.WriteString("protocol", "vmc-user");
        w.WriteNumber("version", FrameHeader.Version);
        w.WriteStartArray("features");
        for (ulong bits = (ulong)FrontEndConnection.TransportFeatures; bits != 0; bits &= bits - 1)
            w.WriteStringValue(FeatureName(BitOperations.TrailingZeroCount(bits)));
        w.WriteEndArray();
        w.WriteString("feature-bits", $"0x{(ulong)FrontEndConnection.TransportFeatures:x}");
        Range(w, "max-mtu", VmcConstants.MinMtu, VmcConstants.MaxMtu, defaults.MaxMtu);
        Range(w, "pool-size", VmcConstants.MinPool, VmcConstants.MaxPool, defaults.PoolSize);
        Range(w, "max-hmcs", VmcConstants.MinHmcs, VmcConstants.MaxHmcs, defaults.MaxHmcs);
        w.WriteString("drc-index", $"0x{defaults.DrcIndex:X8}");
        w.WriteNumber("max-rdma-segments", SlotLayout.MaxSegments);
        w.WriteNumber("max-memory-regions", MemTableRequest.MaxRegions);
        w.WriteEndObject();
        w.Flush();
        output.WriteByte((byte)'\n');
    }

    private static void Range(Utf8JsonWriter w, string name, int min, int max, int dflt)
    {
        w.WriteStartObject(name);
        w.WriteNumber("min", min);
        w.WriteNumber("max", max);
        w.WriteNumber("default", dflt);
        w.WriteEndObject();
    }
}
