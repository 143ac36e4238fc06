using System.Text.Encodings.Web;
using System.Text.Json;
using VmcBackend.Engine.Observe;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Router;

namespace VmcBackend.Control.Trace;

/// <summary>
/// One JSON object per record (<c>vmcctl trace --read FILE --json</c>), for programs such as the
/// conformance report: the record's position, time, VM, type name, the speaker and the line
/// <see cref="TraceText"/> prints, and the decoded fields of its payload (docs/control.md lists them).
/// </summary>
public sealed class TraceJson(long clockBaseNs)
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly Dictionary<ushort, string> _names = [];

    public string Format(TraceRecord r)
    {
        if (r.Type == RecordType.VmStart) _names[r.Vm] = r.VmStart.Name;
        using var buf = new MemoryStream();
        using (var w = new Utf8JsonWriter(buf, Options))
        {
            w.WriteStartObject();
            w.WriteNumber("i", r.Index);
            w.WriteNumber("t", Math.Round((r.TimeNs - clockBaseNs) / 1e9, 6));
            w.WriteString("vm", _names.TryGetValue(r.Vm, out var n) ? n : $"vm#{r.Vm}");
            w.WriteString("type", TraceReader.Name(r.Type));
            var (who, what) = TraceText.Describe(r);
            w.WriteString("who", who);
            w.WriteString("text", what);
            Fields(w, r);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buf.GetBuffer(), 0, (int)buf.Length);
    }

    private static void Fields(Utf8JsonWriter w, TraceRecord r)
    {
        switch (r.Type)
        {
            case RecordType.Submit or RecordType.Post:
                Entry(w, r.Entry);
                break;
            case RecordType.RegCrq:
                w.WriteNumber("entries", r.RegCrq.Entries);
                w.WriteBoolean("reconnect", r.RegCrq.Reconnect);
                break;
            case RecordType.CopyRdma:
                var (dir, length, remote, segs) = r.CopyRdma;
                w.WriteString("direction", dir == Engine.Backend.RdmaDirection.LocalToRemote ? "guest->hv" : dir == Engine.Backend.RdmaDirection.RemoteToLocal ? "hv->guest" : $"{(uint)dir}");
                w.WriteNumber("length", length);
                w.WriteNumber("remote", remote);
                w.WriteNumber("segments", segs.Length);
                break;
            case RecordType.Result:
                w.WriteNumber("rc", r.Result.Rc);
                w.WriteString("rc_name", TraceText.Result(r.Result.Rc, 0)[2..]);
                w.WriteNumber("value", r.Result.Value);
                break;
            case RecordType.Memory:
                var m = r.Memory;
                w.WriteNumber("address", m.Address);
                w.WriteNumber("length", m.Length);
                w.WriteBoolean("write", m.Write);
                w.WriteBoolean("ok", m.Ok);
                break;
            case RecordType.Message:
                var msg = r.Message;
                w.WriteNumber("hmc", msg.HmcIndex);
                w.WriteString("direction", msg.Direction == MessageDirection.FromPartition ? "partition->hmc" : "hmc->partition");
                w.WriteNumber("length", msg.Length);
                Router(w, msg.Head.Span);
                break;
            case RecordType.Failed:
                w.WriteNumber("reason", (uint)r.Failure.Reason);
                w.WriteString("reason_name", r.Failure.Reason.ToString());
                w.WriteString("detail", r.Failure.Text);
                break;
            case RecordType.Time:
                w.WriteNumber("timestamp", r.Timestamp);
                break;
            case RecordType.VmStart:
                var v = r.VmStart;
                w.WriteString("name", v.Name);
                w.WriteNumber("pid", v.Pid);
                w.WriteNumber("max_mtu", v.MaxMtu);
                w.WriteNumber("pool_size", v.PoolSize);
                w.WriteNumber("max_hmcs", v.MaxHmcs);
                w.WriteNumber("drc_index", v.DrcIndex);
                w.WriteBoolean("joined", (r.Flags & (byte)VmStartFlags.Joined) != 0);
                break;
            case RecordType.Attach:
                w.WriteNumber("hmc", r.Attach.HmcIndex);
                w.WriteNumber("client_pid", r.Attach.ClientPid);
                break;
            case RecordType.Detach:
                w.WriteNumber("hmc", r.Detach.HmcIndex);
                w.WriteString("reason", r.Detach.Reason);
                break;
            case RecordType.HostSend:
                w.WriteNumber("hmc", r.HostSend.HmcIndex);
                w.WriteNumber("length", r.HostSend.Message.Length);
                Router(w, r.HostSend.Message.Span);
                break;
            case RecordType.Lost:
                w.WriteNumber("count", r.LostCount);
                break;
        }
    }

    /// <summary>A CRQ entry: <c>msg</c> (INIT, INIT_RESP, TRANSPORT_EVENT, CAP, OPEN_RESP, ...) and its fields.</summary>
    private static void Entry(Utf8JsonWriter w, ReadOnlySpan<byte> e)
    {
        w.WriteString("raw", Convert.ToHexString(e));
        switch ((CrqValid)e[0])
        {
            case CrqValid.Init:
                w.WriteString("msg", e[1] switch { 1 => "INIT", 2 => "INIT_RESP", _ => $"INIT_0x{e[1]:X2}" });
                return;
            case CrqValid.Transport:
                w.WriteString("msg", "TRANSPORT_EVENT");
                w.WriteNumber("event", e[1]);
                return;
            case CrqValid.Payload:
                break;
            default:
                w.WriteString("msg", $"VALID_0x{e[0]:X2}");
                return;
        }
        var type = (VmcMessageType)e[1];
        w.WriteString("msg", TraceText.TypeName(type));
        if (type is VmcMessageType.Capabilities or VmcMessageType.CapabilitiesResponse)
        {
            var c = CapabilitiesEntry.Read(e);
            if (type == VmcMessageType.CapabilitiesResponse) w.WriteNumber("status", e[2]);
            w.WriteNumber("mtu", c.MaxMtu);
            w.WriteNumber("pool", c.PoolSize);
            w.WriteNumber("hmcs", c.MaxHmcs);
            w.WriteNumber("crq", c.CrqSize);
            w.WriteNumber("version", c.Version);
            return;
        }
        var m = CrqEntry.Read(e);
        if (type is VmcMessageType.OpenResponse or VmcMessageType.CloseResponse or VmcMessageType.AddBufferResponse or VmcMessageType.RemoveBufferResponse)
        {
            w.WriteNumber("status", (byte)m.Status);
            w.WriteString("status_name", m.Status.ToString());
        }
        w.WriteNumber("hmc", m.HmcIndex);
        w.WriteNumber("session", m.Session);
        if (m.BufferId == CrqEntry.InvalidBufferId) w.WriteNull("buffer"); else w.WriteNumber("buffer", m.BufferId);
        if (type == VmcMessageType.AddBuffer)
        {
            w.WriteString("owner", m.Owner == BufferOwner.Hypervisor ? "hv" : "partition");
            w.WriteNumber("lioba", m.Lioba);
        }
        if (type == VmcMessageType.Signal) w.WriteNumber("length", m.MessageLength);
    }

    private static void Router(Utf8JsonWriter w, ReadOnlySpan<byte> head)
    {
        if (head.Length < RouterHeader.Size || !RouterHeader.HasDescriptor(head)) return;
        var h = RouterHeader.Read(head);
        w.WriteStartObject("router");
        w.WriteString("kind", h.IsResponse ? "response" : "request");
        w.WriteString("op", h.Opcode switch
        {
            RouterOpcode.ExchangeOps => "EXCHANGE_OPS",
            RouterOpcode.Close => "CLOSE",
            RouterOpcode.Echo => "ECHO",
            _ => $"0x{(ushort)h.Opcode:X4}",
        });
        w.WriteNumber("token", h.Token);
        if (h.IsResponse) w.WriteNumber("rc", (ushort)h.ReturnCode);
        w.WriteEndObject();
    }
}
