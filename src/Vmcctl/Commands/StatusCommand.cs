using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmcBackend.Control.Protocol;

namespace Vmcctl.Commands;

/// <summary><c>vmcctl status [--json] [--vm VM]</c>: every connected VM, its HMCs and counters.</summary>
internal static class StatusCommand
{
    public static Command Create(Option<string> control)
    {
        var json = new Option<bool>("--json") { Description = "Print the status as JSON (docs/control.md, \"status\")" };
        var vm = new Option<string?>("--vm") { Description = "Only this VM (name, e.g. vm1, or its front-end's pid)", HelpName = "VM" };
        var cmd = new Command("status", "Show every VM connected to vmcd: adapter state, negotiated limits, HMC sessions, buffers by owner, counters") { json, vm };
        cmd.SetAction((r, ct) => Exit.WithClient(r.GetValue(control)!, ct, async (client, token) =>
        {
            var report = await client.StatusAsync(r.GetValue(vm), token);
            Console.Out.Write(r.GetValue(json) ? Json(report) + "\n" : Text(report));
            return Exit.Ok;
        }));
        return cmd;
    }

    private static string Json(StatusReport report)
    {
        var indented = new ControlJson(new JsonSerializerOptions(ControlJson.Default.Options) { WriteIndented = true });
        return JsonSerializer.Serialize(report, indented.StatusReport);
    }

    private static string Text(StatusReport s)
    {
        var b = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        b.Append(c, $"vmcd pid {s.Vmcd.Pid}, up {s.Vmcd.UptimeSeconds:F0} s, serving {s.Vmcd.DataSocket}; {s.Vms.Count} VM{(s.Vms.Count == 1 ? "" : "s")}, {s.Vmcd.TraceReaders} trace reader{(s.Vmcd.TraceReaders == 1 ? "" : "s")}\n");
        foreach (var vm in s.Vms)
        {
            b.Append(c, $"{vm.Name}: front-end pid {vm.Pid}, adapter {vm.State}");
            if (vm.State == "ready") b.Append(c, $", MTU {vm.Mtu}, pool {vm.PoolSize}, HMCs {vm.Hmcs}");
            b.Append(c, $", DRC index {vm.DrcIndex} (offers MTU {vm.Offered.MaxMtu}, pool {vm.Offered.PoolSize}, HMCs {vm.Offered.MaxHmcs}), backlog {vm.Backlog}, traced by {vm.TraceReaders}\n");
            foreach (var h in vm.Hmc)
            {
                string who = h.Handler == "attached" ? $"attached (vmcctl pid {h.AttachedPid})" : h.Handler;
                string session = h.Open ? $"session {h.Session}, HMC ID \"{h.HmcId}\"" : "no session";
                b.Append(c, $"  HMC {h.Index}: {session}, served by {who}; buffers: partition {h.Buffers.Partition} ({h.Buffers.Delivered} of them delivered, unread), hypervisor {h.Buffers.Hypervisor}; {h.OutboundQueued} messages waiting\n");
            }
            if (vm.Counters.Count > 0)
                b.Append("  counters: ").AppendJoin(", ", vm.Counters.Select(kv => $"{kv.Key} {kv.Value.ToString(c)}")).Append('\n');
        }
        return b.ToString();
    }
}
