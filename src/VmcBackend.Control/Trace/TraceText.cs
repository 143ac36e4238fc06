using System.Globalization;
using System.Text;
using VmcBackend.Engine.Observe;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;
using VmcBackend.Wire.Router;

namespace VmcBackend.Control.Trace;

/// <summary>
/// One line of text per record, like tcpdump: seconds since the trace began, the VM, who speaks
/// (<c>guest&gt;</c> the partition through the seam, <c>&lt;hv</c> the hypervisor's answer,
/// <c>ctl</c> the control plane), and the decoded record. Keeps the VM names seen in VM_START.
/// </summary>
public sealed class TraceText(long clockBaseNs)
{
    private readonly Dictionary<ushort, string> _names = [];

    public string Format(TraceRecord r)
    {
        if (r.Type == RecordType.VmStart) _names[r.Vm] = r.VmStart.Name;
        string vm = _names.TryGetValue(r.Vm, out var n) ? n : $"vm#{r.Vm}";
        double t = (r.TimeNs - clockBaseNs) / 1e9;
        var (who, what) = Describe(r);
        return string.Create(CultureInfo.InvariantCulture, $"{t,12:F6} {vm,-5} {who,-6} {what}");
    }

    /// <summary>The speaker column and the decoded text of a record.</summary>
    public static (string Who, string What) Describe(TraceRecord r) => r.Type switch
    {
        RecordType.Submit => ("guest>", Entry(r.Entry)),
        RecordType.Post => ("<hv", Entry(r.Entry)),
        RecordType.RegCrq => ("guest>", $"H_REG_CRQ {r.RegCrq.Entries} entries{(r.RegCrq.Reconnect ? " (reconnect)" : "")}"),
        RecordType.FreeCrq => ("guest>", "H_FREE_CRQ"),
        RecordType.CopyRdma => ("guest>", Rdma(r)),
        RecordType.RequestVmc => ("guest>", "H_REQUEST_VMC"),
        RecordType.Reset => ("guest>", "device RESET"),
        RecordType.Poll => ("hv", "retry pending output"),
        RecordType.Result => ("<hv", Result(r.Result.Rc, r.Result.Value)),
        RecordType.Memory => ("hv", Memory(r)),
        RecordType.Message => Message(r),
        RecordType.Failed => ("<hv", $"CHANNEL_FAILED reason {(uint)r.Failure.Reason} ({r.Failure.Reason}): {r.Failure.Text}"),
        RecordType.Time => ("hv", $"clock read {r.Timestamp}"),
        RecordType.VmStart => ("ctl", VmStart(r)),
        RecordType.VmEnd => ("ctl", "VM disconnected"),
        RecordType.Attach => ("ctl", $"HMC {r.Attach.HmcIndex} attached to a host program (vmcctl pid {r.Attach.ClientPid})"),
        RecordType.Detach => ("ctl", $"HMC {r.Detach.HmcIndex} detached ({r.Detach.Reason}): built-in router again"),
        RecordType.HostSend => ("ctl", $"HMC {r.HostSend.HmcIndex} host program sends {r.HostSend.Message.Length} bytes{Router(r.HostSend.Message.Span, r.HostSend.Message.Length)}"),
        RecordType.Lost => ("ctl", $"{r.LostCount} records LOST here (the trace reader was too slow)"),
        _ => ("?", $"unknown record type 0x{(byte)r.Type:X2}, {r.Payload.Length} bytes"),
    };

    private static string VmStart(TraceRecord r)
    {
        var v = r.VmStart;
        string joined = (r.Flags & (byte)VmStartFlags.Joined) != 0 ? " (already running when the trace began)" : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"VM {v.Name} connected{joined}: front-end pid {v.Pid}, offers MTU {v.MaxMtu}, pool {v.PoolSize}, HMCs {v.MaxHmcs}, DRC index 0x{v.DrcIndex:X8}");
    }

    /// <summary>A CRQ entry decoded: init, capabilities, or a VMC message with its fields.</summary>
    public static string Entry(ReadOnlySpan<byte> e)
    {
        string raw = Convert.ToHexString(e);
        switch ((CrqValid)e[0])
        {
            case CrqValid.Init:
                return e[1] switch { 1 => "INIT", 2 => "INIT_RESP", _ => $"init type 0x{e[1]:X2}" } + $"  [{raw}]";
            case CrqValid.Transport:
                return $"TRANSPORT_EVENT 0x{e[1]:X2}  [{raw}]";
            case CrqValid.Payload:
                break;
            default:
                return $"entry with valid byte 0x{e[0]:X2}  [{raw}]";
        }
        var type = (VmcMessageType)e[1];
        if (type is VmcMessageType.Capabilities or VmcMessageType.CapabilitiesResponse)
        {
            var c = CapabilitiesEntry.Read(e);
            string status = type == VmcMessageType.CapabilitiesResponse ? $" status {e[2]}" : "";
            return string.Create(CultureInfo.InvariantCulture,
                $"{TypeName(type)}{status} MTU {c.MaxMtu} pool {c.PoolSize} HMCs {c.MaxHmcs} crq {c.CrqSize} version 0x{c.Version:X4}  [{raw}]");
        }
        var m = CrqEntry.Read(e);
        var sb = new StringBuilder(TypeName(type));
        if (type is VmcMessageType.OpenResponse or VmcMessageType.CloseResponse or VmcMessageType.AddBufferResponse or VmcMessageType.RemoveBufferResponse)
            sb.Append(CultureInfo.InvariantCulture, $" status {(byte)m.Status} ({m.Status})");
        sb.Append(CultureInfo.InvariantCulture, $" hmc {m.HmcIndex} session {m.Session} buffer {(m.BufferId == CrqEntry.InvalidBufferId ? "none" : m.BufferId.ToString(CultureInfo.InvariantCulture))}");
        if (type == VmcMessageType.AddBuffer)
            sb.Append(CultureInfo.InvariantCulture, $" owner {(m.Owner == BufferOwner.Hypervisor ? "hv" : "partition")} lioba 0x{m.Lioba:X}");
        if (type == VmcMessageType.Signal) sb.Append(CultureInfo.InvariantCulture, $" length {m.MessageLength}");
        sb.Append("  [").Append(raw).Append(']');
        return sb.ToString();
    }

    private static string TypeName(VmcMessageType t) => t switch
    {
        VmcMessageType.Capabilities => "CAP",
        VmcMessageType.CapabilitiesResponse => "CAP_RESP",
        VmcMessageType.Open => "OPEN",
        VmcMessageType.OpenResponse => "OPEN_RESP",
        VmcMessageType.Close => "CLOSE",
        VmcMessageType.CloseResponse => "CLOSE_RESP",
        VmcMessageType.AddBuffer => "ADD_BUF",
        VmcMessageType.AddBufferResponse => "ADD_BUF_RESP",
        VmcMessageType.RemoveBuffer => "REM_BUF",
        VmcMessageType.RemoveBufferResponse => "REM_BUF_RESP",
        VmcMessageType.Signal => "SIGNAL",
        _ => $"message type 0x{(byte)t:X2}",
    };

    private static string Rdma(TraceRecord r)
    {
        var (dir, length, remote, segs) = r.CopyRdma;
        string way = dir switch { Engine.Backend.RdmaDirection.LocalToRemote => "guest->hv", Engine.Backend.RdmaDirection.RemoteToLocal => "hv->guest", _ => $"direction {(uint)dir}" };
        return string.Create(CultureInfo.InvariantCulture, $"H_COPY_RDMA {way} {length} bytes remote 0x{remote:X} ({segs.Length} segment{(segs.Length == 1 ? "" : "s")}{(segs.Length > 0 ? $", first 0x{segs[0].Address:X}" : "")})");
    }

    private static string Memory(TraceRecord r)
    {
        var m = r.Memory;
        return string.Create(CultureInfo.InvariantCulture,
            $"{(m.Write ? "wrote" : "read")} guest 0x{m.Address:X} {m.Length} bytes{(m.Ok ? "" : ": outside guest memory")}");
    }

    private static (string, string) Message(TraceRecord r)
    {
        var m = r.Message;
        string who = m.Direction == MessageDirection.FromPartition ? $"hmc{m.HmcIndex}<" : $"hmc{m.HmcIndex}>";
        string way = m.Direction == MessageDirection.FromPartition ? "partition->HMC" : "HMC->partition";
        return (who, string.Create(CultureInfo.InvariantCulture, $"{way} {m.Length} bytes{Router(m.Head.Span, m.Length)}"));
    }

    /// <summary>The router header of a message, decoded (empty when it has none).</summary>
    public static string Router(ReadOnlySpan<byte> head, int length)
    {
        if (head.Length < RouterHeader.Size || !RouterHeader.HasDescriptor(head)) return "";
        var h = RouterHeader.Read(head);
        string kind = h.IsResponse ? "response" : "request";
        string op = h.Opcode switch
        {
            RouterOpcode.ExchangeOps => "EXCHANGE_OPS",
            RouterOpcode.Close => "CLOSE",
            RouterOpcode.Echo => "ECHO",
            _ => $"opcode 0x{(ushort)h.Opcode:X4}",
        };
        string rc = h.IsResponse ? string.Create(CultureInfo.InvariantCulture, $" rc 0x{(ushort)h.ReturnCode:X4}") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $": router {kind} {op} category 0x{(ushort)h.Category:X4} token {h.Token} flags 0x{(byte)h.Flags:X2}{rc} data {h.DataLength}{(h.MessageLength != (uint)length ? $" (header says {h.MessageLength} bytes)" : "")}");
    }

    /// <summary>An hcall rc by name.</summary>
    public static string Result(long rc, ulong value)
    {
        string name = (HcallReturn)rc switch
        {
            HcallReturn.Success => "H_SUCCESS",
            HcallReturn.Busy => "H_BUSY",
            HcallReturn.Closed => "H_CLOSED",
            HcallReturn.Hardware => "H_HARDWARE",
            HcallReturn.Function => "H_FUNCTION",
            HcallReturn.Parameter => "H_PARAMETER",
            HcallReturn.Permission => "H_PERMISSION",
            HcallReturn.SourceParm => "H_SOURCE_PARM",
            HcallReturn.DestParm => "H_DEST_PARM",
            HcallReturn.RemoteParm => "H_REMOTE_PARM",
            HcallReturn.Resource => "H_RESOURCE",
            _ => rc.ToString(CultureInfo.InvariantCulture),
        };
        return value == 0 ? $"= {name}" : string.Create(CultureInfo.InvariantCulture, $"= {name}, r4 0x{value:X}");
    }
}
