using System.CommandLine;
using System.Text.Json;
using VmcBackend.Control.Client;
using VmcBackend.Control.Protocol;

namespace Vmcctl.Commands;

/// <summary>
/// <c>vmcctl inject [--vm VM] FAULT [key=value ...]</c>: one fault of the catalogue (docs/faults.md)
/// added to a running VM's engine; an action without <c>when=</c> acts at once. Prints what vmcd took
/// and what the fault did at once. Exit 2 for a fault vmcd does not know or a bad key.
/// </summary>
internal static class InjectCommand
{
    public static Command Create(Option<string> control)
    {
        var vm = new Option<string?>("--vm") { Description = "The VM (name, e.g. vm1, or its front-end's pid); optional when one VM is connected", HelpName = "VM" };
        var fault = new Argument<string[]>("fault")
        {
            Description = "The fault and its keys as in a faults file, e.g. transport-event, or rdma rc=hardware dir=to-hv (docs/faults.md)",
            Arity = ArgumentArity.OneOrMore,
        };
        var cmd = new Command("inject", "Make vmcd misbehave once, now or at the fault's next point: a transport event, a lost or late answer, a failing hypercall...") { vm, fault };
        cmd.SetAction((r, ct) => Exit.WithClient(r.GetValue(control)!, ct, async (client, token) =>
        {
            string text = string.Join(' ', r.GetValue(fault)!);
            using var args = JsonDocument.Parse(JsonSerializer.Serialize(new Dictionary<string, string> { ["fault"] = text }, InjectJson.Default.DictionaryStringString));
            var response = ControlClient.Check(await client.RequestAsync(
                new ControlRequest { Op = ControlOps.Inject, Vm = r.GetValue(vm), Args = args.RootElement.Clone() }, token));
            var report = response.Fault ?? throw new ControlException(ControlFailure.Protocol, "vmcd's inject response has no fault report");
            Console.Out.WriteLine(report.Fired.Count == 0
                ? $"{report.Vm}: {report.Rule}: armed (acts at its next point or trigger)"
                : $"{report.Vm}: {report.Rule}: {string.Join("; ", report.Fired)}");
            return Exit.Ok;
        }));
        return cmd;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class InjectJson : System.Text.Json.Serialization.JsonSerializerContext;
